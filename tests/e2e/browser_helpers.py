"""What the browser tests do the way a person would: log in, type a config into the generated form field by field,
wait for a job, take a screenshot; and the jobs they finished, shared so a later flow (a chain, a comparison) does not
run its own."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from search_spaces import registry
from tests.e2e.conftest import USERS
from tests.stack import ROOT, Stack

SHOTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))
# Jobs a test ran to success from the browser, by kind: later flows start from them instead of running their own.
FINISHED: dict[str, int] = {}
# Curve latencies measured on the job pages (seconds from the worker storing a point to the page drawing it).
LATENCIES: dict[str, list[float]] = {}
# Console messages a test expects (the 400 its bad input gets), per page: anything else fails the test.
ALLOWED_CONSOLE: dict[int, list[re.Pattern[str]]] = {}


def allow_console(page: Any, pattern: str) -> None:
    ALLOWED_CONSOLE.setdefault(id(page), []).append(re.compile(pattern))


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A screenshot for reviewers in test-artifacts/ (gitignored)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=full_page)


def log_in(page: Any, next_path: str = "/", username: str = "alice", password: str | None = None) -> None:
    from urllib.parse import quote

    page.goto(f"/login/?next={quote(next_path)}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password if password is not None else USERS[username])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"^(?!.*/login/).*$"))


def open_submit(page: Any, query: str = "") -> None:
    from playwright.sync_api import expect

    page.goto(f"/submit/{query}")
    expect(page.locator("#submit-form[data-ready]")).to_be_attached(timeout=30_000)


def _types(prop: dict[str, Any]) -> list[str]:
    t = prop.get("type", [])
    return t if isinstance(t, list) else [t]


def _reveal(page: Any, locator: Any) -> None:
    """Open "Advanced options" when the field is folded inside it."""
    if not locator.is_visible():
        summary = page.locator("#advanced-options > summary")
        if summary.count() and not page.locator("#advanced-options").evaluate("d => d.open"):
            summary.click()


def type_field(page: Any, name: str, prop: dict[str, Any], value: Any) -> None:
    """Set config field ``name`` to ``value`` as a person would: typing numbers and list items, ticking boxes,
    choosing options."""
    field_id = f"cfg-{name}"
    t = _types(prop)
    if "array" in t and "enum" in prop.get("items", {}):
        first = page.locator(f"#{field_id} input").first
        _reveal(page, first)
        for option in prop["items"]["enum"]:
            page.locator(f"[id='{field_id}-{option}']").set_checked(option in value)
    elif "array" in t:
        group = page.locator(f"#{field_id}")
        _reveal(page, group)
        items = group.locator("input.list-item")
        while items.count() > len(value):
            group.get_by_role("button", name=re.compile(r"^remove item")).last.click()
        while items.count() < len(value):
            group.get_by_role("button", name=re.compile(r"^add an item")).click()
        for i, v in enumerate(value):
            items.nth(i).fill(str(v))
    elif "enum" in prop:
        select = page.locator(f"#{field_id}")
        _reveal(page, select)
        select.select_option(label="none" if value is None else str(value))
    elif t == ["boolean"]:
        box = page.locator(f"#{field_id}")
        _reveal(page, box)
        box.set_checked(bool(value))
    elif "object" in t:
        raise AssertionError(f"{name}: typing a nested object is not needed by any example yet")
    else:
        box = page.locator(f"#{field_id}")
        _reveal(page, box)
        box.fill("" if value is None else str(value))


def type_config(page: Any, kind_name: str, values: dict[str, Any]) -> None:
    schema = registry.get_kind(kind_name).schema["properties"]
    for name, value in values.items():
        type_field(page, name, schema[name], value)


def wait_estimate(page: Any) -> str:
    """The budget the server estimated for what the form holds now."""
    from playwright.sync_api import expect

    estimate = page.locator("#estimate[aria-busy=false]")
    expect(estimate).to_contain_text("Estimated budget", timeout=20_000)
    return estimate.inner_text()


def job_id_from_url(page: Any) -> int:
    return int(re.search(r"/jobs/(\d+)/", page.url).group(1))


def measure_curve_latency(
    page: Any, stack: Stack, job_id: int, opened: dt.datetime, kind: str
) -> tuple[list[float], list[int]]:
    """Seconds between the worker storing each point (its created_at) and this page drawing it, for the points
    stored after the page opened (the first poll draws the older ones all at once); and the ids of those points the
    page never drew."""
    client = stack.client("alice", USERS["alice"])
    log = page.evaluate("() => AutoMLCurves.current ? AutoMLCurves.current.log : []")
    drawn = {point: at for point, at, _ in log}
    received = {point: at for point, _, at in log}
    stored: dict[int, dt.datetime] = {}
    since = 0
    while True:
        data = client.get(f"/api/v1/jobs/{job_id}/metrics/?since={since}").json()
        for p in data["results"]:
            stored[p["id"]] = dt.datetime.fromisoformat(p["created_at"].replace("Z", "+00:00"))
        since = data["last_id"]
        if not data["next"]:
            break
    latencies, fetched, missed = [], [], []
    for point_id, when in stored.items():
        if when <= opened:
            continue
        if point_id not in drawn:
            missed.append(point_id)
            continue
        seen = dt.datetime.fromtimestamp(drawn[point_id] / 1000, tz=dt.UTC)
        latencies.append(round((seen - when).total_seconds(), 3))
        answered = dt.datetime.fromtimestamp(received[point_id] / 1000, tz=dt.UTC)
        fetched.append(round((answered - when).total_seconds(), 3))
    LATENCIES.setdefault(kind, []).extend(latencies)
    LATENCIES.setdefault(f"{kind} (answer received)", []).extend(fetched)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "curve_latency.json").write_text(json.dumps(LATENCIES, indent=1))
    return latencies, missed
