"""A person in headless Chromium: log in, submit a job from the generated form, watch it finish."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.browser_helpers import ALLOWED_CONSOLE, allow_console
from tests.e2e.conftest import USERS
from tests.stack import ROOT, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture
def page(stack: Stack):  # noqa: ANN201
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(base_url=stack.base_url, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # A console error (a failed request, a script's complaint) fails the flow too, unless the test expects it.
        console: list[str] = []
        page.on(
            "console",
            lambda msg: console.append(f"{msg.text} at {msg.location.get('url')}") if msg.type == "error" else None,
        )
        yield page
        browser.close()
        allowed = ALLOWED_CONSOLE.pop(id(page), [])
        unexpected = [c for c in console if not any(p.search(c) for p in allowed)]
        assert not errors, f"JavaScript errors on the page: {errors}"
        assert not unexpected, f"console errors on the page: {unexpected}"


def _log_in(page) -> None:  # noqa: ANN001
    """Fill the login form the page shows as alice."""
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(USERS["alice"])
    page.get_by_role("button", name="Log in").click()


def _finished_job_page(page, stack: Stack, kind: str, name: str) -> tuple[dict, object]:  # noqa: ANN001
    """Run ``kind``'s tiny config to success through the API, then open its page logged in as alice."""
    from search_spaces.registry import get_kind

    client = stack.client("alice", USERS["alice"])
    job = client.submit(kind, get_kind(kind).tiny_config, name=name)
    client.wait_status(job["id"], {"succeeded"}, timeout=180)
    page.goto(f"/login/?next=/jobs/{job['id']}/")
    _log_in(page)
    return job, client


def test_log_in_submit_from_the_form_and_watch_progress_reach_100(page, stack: Stack) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/"))
    _log_in(page)
    expect(page.get_by_role("heading", name="Your jobs")).to_be_visible()
    page.screenshot(path=SHOTS / "job_list.png", full_page=True)

    page.get_by_role("link", name="Submit a job").click()
    page.get_by_label("Kind").select_option("mlp_sweep")
    trials = page.locator("#cfg-trials")
    expect(trials).to_have_value("8")  # the kind's default, prefilled from its JSON Schema
    examples = page.get_by_label("Start from")
    examples.select_option("tiny")  # the kind's named configs (GET /api/v1/job-kinds/ examples) fill the form
    expect(trials).to_have_value("4")
    examples.select_option("default")
    expect(trials).to_have_value("8")
    page.get_by_label("Name").fill("from the browser")
    trials.fill("0")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#cfg-trials-error")).to_contain_text("minimum")  # the API's field error, shown
    trials.fill("3")
    page.locator("#cfg-epochs").fill("40")
    # Not full_page: Chromium's full-page capture resizes the viewport, after which that click is lost.
    page.screenshot(path=SHOTS / "job_submit.png")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    progress = page.locator("#job-progress")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#job-progress-text")).to_have_text("100%")
    assert progress.evaluate("p => p.value") == 1.0
    expect(page.locator("#trials tbody tr")).to_have_count(3)
    expect(page.locator("#artifacts li")).to_have_count(3)  # the model, its figure, summary.json
    expect(page.locator("#curves .main-svg").first).to_be_visible()
    page.screenshot(path=SHOTS / "job_detail.png", full_page=True)

    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.locator("#jobs tbody tr").first).to_contain_text("from the browser")


def test_the_form_offers_choice_lists_as_checkboxes(page, stack: Stack) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    page.goto("/login/?next=/submit/%3Fkind%3Dgranularity_sweep")
    _log_in(page)
    expect(page.get_by_label("Kind")).to_have_value("granularity_sweep")
    for option in ("fine", "vector", "kernel", "filter"):
        expect(page.get_by_role("checkbox", name=option)).to_be_checked()  # the schema's default: all four
    page.get_by_role("checkbox", name="filter").uncheck()
    page.locator("#cfg-n_trials").fill("2")
    page.screenshot(path=SHOTS / "job_submit_granularity.png")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    client = stack.client("alice", USERS["alice"])
    assert client.job(job_id)["config"]["granularities"] == ["fine", "vector", "kernel"]
    client.post(f"/api/v1/jobs/{job_id}/cancel/")
    client.wait_status(job_id, {"cancelled", "succeeded", "failed"}, timeout=30)


def test_fpga_reports_and_a_synthesis_report_imported_from_the_page(page, stack: Stack) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    job, client = _finished_job_page(page, stack, "hls4ml_sweep", "fpga in the browser")
    section = page.locator("#fpga-section")
    expect(section).to_be_visible()
    trials = len(client.trials(job["id"]))
    expect(page.locator("#fpga-reports tbody tr.estimate")).to_have_count(trials)
    expect(page.locator("#fpga-pareto .main-svg").first).to_be_visible()
    # The chart marks the DSP/latency front: exactly the estimates no other estimate beats on both.
    est = [
        (f["dsp"], f["latency_ns"])
        for f in client.get(f"/api/v1/fpga-reports/?job={job['id']}&page_size=1000").json()["results"]
        if f["source"] == "estimate"
    ]
    front = sorted({p for p in est if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in est)})
    drawn = page.evaluate(
        "() => { const t = document.getElementById('fpga-pareto').data.find(d => d.name === 'Pareto front');"
        " return t ? t.x.map((x, i) => [x, t.y[i]]) : null; }"
    )
    assert drawn is not None and sorted({tuple(p) for p in drawn}) == front, (drawn, front)
    # The note says what this sweep's estimates rest on (its io type's), not a fixed text.
    expect(page.locator("#fpga-note")).to_have_text(client.job(job["id"])["result"]["estimate_note"])
    page.get_by_label("Trial", exact=True).fill("0")
    page.locator("#fpga-import-file").set_input_files(str(ROOT / "tests/fixtures/vivado/pruned_cnn_csynth.rpt"))
    page.get_by_role("button", name="Import").click()
    synthesis = page.locator("#fpga-reports tbody tr.synthesis")
    expect(synthesis).to_have_count(1)
    expect(synthesis).to_contain_text("vivado_hls")
    expect(synthesis).to_contain_text("5414")
    # side by side: the imported row follows trial 0's estimate
    rows = page.locator("#fpga-reports tbody tr")
    expect(rows.nth(0)).to_have_class("estimate")
    expect(rows.nth(1)).to_have_class("synthesis")
    # the job's figures (plotly JSON artifacts) are drawn inline by the page's own plotly.js
    for figure in ("hls4ml_pareto.json", "hls4ml_reuse_factor.json", "hls4ml_bit_width.json"):
        drawn = page.locator(f".figure-plot[data-artifact='{figure}'] .js-plotly-plot .main-svg")
        expect(drawn.first).to_be_visible(timeout=30_000)
    allow_console(page, r"status of 400.*/api/v1/fpga-reports/")  # the refused import's answer
    page.locator("#fpga-import-file").set_input_files(str(ROOT / "README.md"))
    page.get_by_label("Trial", exact=True).fill("0")
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#fpga-import-error")).to_contain_text("file:")
    section.screenshot(path=SHOTS / "job_detail_fpga.png")


def test_a_finished_job_shows_its_headlines_tables_and_figures(page, stack: Stack) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    console_errors: list[str] = []
    page.on(
        "console",
        lambda msg: console_errors.append(f"{msg.text} at {msg.location['url']}") if msg.type == "error" else None,
    )
    job, client = _finished_job_page(page, stack, "mlp_sweep", "results in the browser")
    result = client.job(job["id"])["result"]
    headlines = page.locator("#result-summary .headline")
    expect(headlines).to_have_count(len(result["summary"]))
    for i, entry in enumerate(result["summary"]):
        expect(headlines.nth(i).locator(".headline-label")).to_have_text(entry["label"])
        if entry["unit"]:
            expect(headlines.nth(i).locator(".headline-value")).to_contain_text(entry["unit"])
        if entry["better"]:
            expect(headlines.nth(i)).to_contain_text(f"{entry['better']} is better")
    tables = page.locator("#result-tables table")
    expect(tables).to_have_count(len(result["tables"]))
    for i, t in enumerate(result["tables"]):
        expect(tables.nth(i).locator("caption")).to_have_text(t["name"])
        expect(tables.nth(i).locator("thead th")).to_have_count(len(t["columns"]))
        expect(tables.nth(i).locator("tbody tr")).to_have_count(len(t["rows"]))
    artifacts = client.get(f"/api/v1/jobs/{job['id']}/artifacts/").json()["results"]
    figures = [a["name"] for a in artifacts if a["kind"] == "figure"]
    assert figures
    for name in figures:
        drawn = page.locator(f".figure-plot[data-artifact='{name}'] .js-plotly-plot")
        expect(drawn.locator("svg.main-svg").first).to_be_visible(timeout=30_000)
        expect(drawn.locator(".scatterlayer .point").first).to_be_attached()  # the data, not only the axes
    raw = page.locator("#result-raw")
    assert raw.evaluate("d => !d.open")  # the raw JSON is kept, folded away
    raw.locator("summary").click()
    expect(page.locator("#job-result")).to_contain_text('"best_val_accuracy"')
    page.locator("#job").screenshot(path=SHOTS / "job_detail_results.png")
    assert not console_errors, f"console errors on the job page: {console_errors}"


def test_the_nas_tree_drawing_is_shown_on_the_job_page(page, stack: Stack) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    _finished_job_page(page, stack, "pathlevel_nas", "tree in the browser")
    drawing = page.get_by_role("img", name="best_tree.svg (drawing made by the job)")
    expect(drawing).to_be_visible()
    assert drawing.evaluate("img => img.complete && img.naturalWidth > 100")
    drawing.screenshot(path=SHOTS / "job_detail_nas_tree.png")
