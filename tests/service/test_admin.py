"""Staff review jobs in the admin: filters, search, inlines, readable JSON, cancel and re-run actions."""

from __future__ import annotations

import pytest
from django.test import Client

from automl_site.jobs.models import Job, Trial
from automl_site.jobs.services import job_submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_browser(staff) -> Client:  # noqa: ANN001
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def jobs(alice, bob):  # noqa: ANN001, ANN201
    a = job_submit(owner=alice, kind="mlp_sweep", name="alice-sweep", config={"trials": 3})
    b = job_submit(owner=bob, kind="mlp_sweep", name="bob-sweep")
    Trial.objects.create(job=a, number=0, params={"hidden": 17}, values=[0.75])
    return a, b


def test_staff_see_every_users_jobs_with_filters_and_search(staff_browser, jobs) -> None:  # noqa: ANN001
    page = staff_browser.get("/admin/jobs/job/").content.decode()
    assert "alice-sweep" in page and "bob-sweep" in page
    filtered = staff_browser.get(f"/admin/jobs/job/?owner__id__exact={jobs[0].owner_id}").content.decode()
    assert "alice-sweep" in filtered and "bob-sweep" not in filtered
    assert "bob-sweep" in staff_browser.get("/admin/jobs/job/?q=bob").content.decode()
    assert staff_browser.get("/admin/jobs/job/?status__exact=queued&kind__exact=mlp_sweep").status_code == 200


def test_job_page_shows_config_json_and_inline_trials(staff_browser, jobs) -> None:  # noqa: ANN001
    page = staff_browser.get(f"/admin/jobs/job/{jobs[0].pk}/change/").content.decode()
    assert "&quot;trials&quot;: 3" in page  # pretty-printed config
    assert "hidden" in page and "17" in page  # the inline trial


def test_cancel_and_rerun_actions(staff_browser, jobs) -> None:  # noqa: ANN001
    a, b = jobs
    staff_browser.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [a.pk]})
    a.refresh_from_db()
    assert a.status == "cancelled"
    staff_browser.post("/admin/jobs/job/", {"action": "rerun_jobs", "_selected_action": [b.pk]})
    rerun = Job.objects.exclude(pk__in=[a.pk, b.pk]).get()
    assert rerun.owner_id == b.owner_id and rerun.config == b.config and rerun.status == "queued"


def test_non_staff_cannot_open_the_admin(alice) -> None:  # noqa: ANN001
    client = Client()
    client.force_login(alice)
    assert client.get("/admin/jobs/job/").status_code == 302


def test_healthz_reports_database_and_broker(client) -> None:  # noqa: ANN001
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_says_when_the_broker_is_down(client, settings) -> None:  # noqa: ANN001
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["broker"].startswith("error") and r.json()["database"] == "ok"


def test_bootstrap_creates_the_admin_and_demo_jobs_once(db, settings, tmp_path) -> None:  # noqa: ANN001
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from automl_site.jobs.models import Job

    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("bootstrap", "--demo", stdout=out)
    assert get_user_model().objects.get(username="admin").is_superuser
    assert "password:" in (tmp_path / "admin-credentials.txt").read_text()
    assert sorted(Job.objects.values_list("kind", flat=True)) == ["hls4ml_sweep", "mlp_sweep"]
    for job in Job.objects.all():
        assert job.status == "queued" and job.config  # validated, defaults filled
    call_command("bootstrap", "--demo", stdout=StringIO())
    assert Job.objects.count() == 2
