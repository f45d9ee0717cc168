"""Running a claimed job: the hop from a queue message to a call of the kind's algorithm.

``job_execute`` claims the job (a conditional UPDATE in the services), starts the heartbeat, hands the kind a
:class:`~workers.reporting.DbReporter`, and records how the run ended through the services. It holds no business
rule of its own: what a claim, a success, a failure or a stop means is in ``automl_site.jobs.services``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings

from automl_site.jobs import services
from automl_site.jobs.models import Artifact, Job, JobStatus
from search_spaces import registry
from search_spaces.base import JobCancelled, JobInputs
from workers.reporting import DbReporter, Heartbeat, HelperReporter

log = logging.getLogger(__name__)


def _conf(key: str) -> Any:
    return settings.AUTOML[key]


def job_inputs(job: Job, workdir: Path) -> JobInputs:
    """What the kind works on besides its config: data, input model, Optuna storage, scratch folder, threads."""
    model_path = model_arch = None
    if job.model is not None:
        model_path, model_arch = Path(job.model.file.path), job.model.architecture
    elif job.parent is not None:
        artifact = Artifact.objects.get(job=job.parent, name=job.parent.result["output_model"])
        model_path = Path(artifact.file.path)
    dataset = job.dataset
    return JobInputs(
        seed=int(job.config.get("seed", 0)),
        device="cpu",
        threads=torch_threads(),
        dataset=dataset.builtin or None if dataset else None,
        dataset_path=Path(dataset.file.path) if dataset and dataset.file else None,
        model_path=model_path,
        model_arch=model_arch,
        optuna_storage=services.optuna_storage_url(),
        study_name=f"job-{job.pk}",
        workdir=workdir,
    )


def torch_threads() -> int:
    """Intra-op threads a job may use: what ``workers/celery_app.py`` set for this worker process."""
    return max(1, int(os.environ.get("OMP_NUM_THREADS") or os.environ.get("AUTOML_TORCH_THREADS") or 1))


def error_text(exc: BaseException) -> str:
    """The failure as the job's owner should read it: the exception and its last frames, with the server's
    folders replaced by their role (a user needs the line that failed, not where the service is installed)."""
    tail = "".join(traceback.format_exception(exc)[-3:])
    text = f"{type(exc).__name__}: {exc}\n\n{tail}"
    text = re.sub(r"/[^\s\"']*/site-packages/", "<site-packages>/", text)
    folders = {
        str(Path(settings.BASE_DIR)): "<app>",
        str(Path(settings.VAR_DIR)): "<var>",
        str(Path(settings.MEDIA_ROOT)): "<media>",  # /srv/media under compose, outside the app
        str(Path(settings.AUTOML_WORK_DIR)): "<work>",
        sysconfig.get_paths()["stdlib"]: "<python>",
        sys.prefix: "<python>",
    }
    for folder in sorted(folders, key=len, reverse=True):  # the deepest first: work and media sit inside var
        text = text.replace(folder, folders[folder])
    return text


def job_execute(*, job_id: int, task_id: str, host: str = "") -> str:
    """Claim and run one job to its end; returns what happened (for the worker's log)."""
    attempt = services.job_claim(job_id=job_id, task_id=task_id, host=host or _conf("HOSTNAME"))
    if attempt is None:
        return "not claimed"
    job = Job.objects.select_related("dataset", "model", "parent").get(id=job_id)
    workdir = services.job_workdir(job_id=job_id)
    heartbeat = Heartbeat(job_id, attempt, _conf("HEARTBEAT_SECONDS"))
    heartbeat.start()
    reporter = DbReporter(job, attempt, heartbeat, workdir)
    try:
        inputs = job_inputs(job, workdir)
        kind = registry.get_kind(job.kind)
        for index in range(1, kind.helpers(job.config) + 1):
            services.job_helper_enqueue(job_id=job_id, index=index)
        result = kind.run(job.config, inputs, reporter)
    except JobCancelled:
        reporter.flush()
        if heartbeat.lost.is_set():
            return "lost claim"
        return services.job_stopped(job_id=job_id, attempt=attempt)
    except Exception as exc:  # any failure of the algorithm is the job's failure, with its message
        reporter.flush()
        log.exception("job %s failed", job_id)
        services.job_fail(job_id=job_id, attempt=attempt, error=error_text(exc))
        return "failed"
    finally:
        heartbeat.finish()
        reporter.cleanup()
    if not services.job_succeed(job_id=job_id, attempt=attempt, result=result):
        return "lost claim"
    return "succeeded"


def job_help(*, job_id: int, index: int) -> str:
    """Run helper ``index`` of a running job (e.g. more trials of its Optuna study) until the job no
    longer needs it. A helper's failure is not the job's: the job's own process carries on."""
    job = Job.objects.select_related("dataset", "model", "parent").filter(id=job_id, status=JobStatus.RUNNING).first()
    if job is None:
        return "job not running"
    workdir = services.job_workdir(job_id=job_id, label=f"helper{index}-")
    heartbeat = Heartbeat(job_id, job.attempts, _conf("HEARTBEAT_SECONDS"), write=False)
    heartbeat.start()
    reporter = HelperReporter(job, job.attempts, heartbeat, workdir)
    try:
        registry.get_kind(job.kind).run_helper(job.config, job_inputs(job, workdir), reporter, index)
        return "done"
    except JobCancelled:
        return "stopped"
    except Exception:
        log.exception("helper %s of job %s failed", index, job_id)
        return "failed"
    finally:
        heartbeat.finish()
        reporter.cleanup()
