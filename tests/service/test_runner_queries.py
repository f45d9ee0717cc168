"""The worker's side of a job in-process, on the real database: a 4-trial mlp_sweep runs through the runner and
the ORM-backed reporter, and its database work stays bounded (queries of the running thread; the heartbeat's own
connection is not counted)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automl_site.jobs import services
from automl_site.jobs.models import Job, MetricPoint, Trial
from workers import reporting
from workers.runner import job_execute

pytestmark = pytest.mark.django_db(transaction=True)

# Round 1 measured 101 for this job: update_or_create took six round trips per trial and checkpoint write.
MAX_QUERIES = 50  # 47 here: per trial an UPDATE + INSERT when it starts, an UPDATE and a metric flush when it ends


@pytest.fixture(autouse=True)
def media(tmp_path, settings):  # noqa: ANN001, ANN201
    settings.MEDIA_ROOT = tmp_path / "media"


def test_a_four_trial_sweep_runs_in_a_bounded_number_of_queries(alice, monkeypatch) -> None:  # noqa: ANN001
    # The reporter also writes on a clock (curves every second, progress every half second); counted here is
    # what the run itself costs, so the count does not depend on how busy the machine is.
    monkeypatch.setattr(reporting, "_METRIC_FLUSH_SECONDS", 1e9)
    monkeypatch.setattr(reporting, "_PROGRESS_SECONDS", 1e9)
    job = services.job_submit(owner=alice, kind="mlp_sweep", config={"trials": 4, "epochs": 5})
    with CaptureQueriesContext(connection) as queries:
        assert job_execute(job_id=job.pk, task_id="in-process", host="test") == "succeeded"
    job.refresh_from_db()
    assert job.status == "succeeded" and job.result["best_val_accuracy"] > 0.5
    assert Trial.objects.filter(job=job, state="complete").count() == 4
    assert MetricPoint.objects.filter(job=job).count() >= 4 * 5 * 2
    print(f"\nqueries to run a 4-trial mlp_sweep: {len(queries)}")
    assert len(queries) <= MAX_QUERIES, "\n".join(q["sql"][:120] for q in queries.captured_queries)


def test_a_failure_names_no_server_folder(alice, settings) -> None:  # noqa: ANN001
    """The job's error is for its owner: the exception and the failing line, not where the service lives."""
    job = services.job_submit(owner=alice, kind="mlp_sweep", config={"trials": 2, "epochs": 1})
    Job.objects.filter(pk=job.pk).update(config={**job.config, "hidden_min": "oops"})  # the algorithm trips on it
    assert job_execute(job_id=job.pk, task_id="in-process", host="test") == "failed"
    job.refresh_from_db()
    assert "TypeError" in job.error and str(settings.BASE_DIR) not in job.error and "site-packages/" not in job.error


def test_an_error_text_names_no_media_var_or_python_folder_wherever_they_live(settings) -> None:  # noqa: ANN001
    import json
    import sysconfig

    from workers.runner import error_text

    settings.MEDIA_ROOT = "/srv/media"  # compose's: outside the app
    settings.VAR_DIR = "/var/lib/automl"
    settings.AUTOML_WORK_DIR = "/var/lib/automl/work"
    try:
        json.loads("{")  # a failing frame inside the standard library
    except ValueError as exc:
        exc.add_note("while reading /srv/media/datasets/7/d.npz and /var/lib/automl/work/job-3/x.npy")
        text = error_text(exc)
    for folder in ("/srv/media", "/var/lib/automl", sysconfig.get_paths()["stdlib"]):
        assert folder not in text, text
    assert "<media>/datasets/7/d.npz" in text and "<work>/job-3/x.npy" in text and "<python>" in text
