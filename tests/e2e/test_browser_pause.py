"""The job page's Pause and Resume buttons, in headless Chromium against the real stack."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import USERS
from tests.e2e.test_browser import _log_in, page  # noqa: F401 - the page fixture
from tests.stack import Stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_pause_and_resume_from_the_job_page(page, stack: Stack) -> None:  # noqa: ANN001, F811
    from playwright.sync_api import expect

    client = stack.client("alice", USERS["alice"])
    job = client.submit("mlp_sweep", {"trials": 30, "epochs": 120, "hidden_min": 64, "hidden_max": 128})
    wait_for(lambda: client.trials(job["id"]), 60, "a first trial")
    page.goto(f"/login/?next=/jobs/{job['id']}/")
    _log_in(page)
    status = page.locator("#job-status")
    expect(status).to_have_text("running", timeout=10_000)
    expect(page.get_by_role("button", name="Resume")).to_be_disabled()

    page.get_by_role("button", name="Pause").click()
    expect(status).to_have_text("paused", timeout=10_000)
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel")).to_be_enabled()

    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text(re.compile("queued|running"), timeout=10_000)
    assert client.job(job["id"])["status"] in ("queued", "running")
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Cancel the job").click()  # a cancel is confirmed first
    expect(status).to_have_text("cancelled", timeout=10_000)
