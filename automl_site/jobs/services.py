"""Writes: every change to jobs, datasets and models goes through one of these functions.

Keyword-only arguments, ``<entity>_<action>`` names (HackSoft Django-Styleguide). Views and tasks only
call them; the algorithms never see the ORM (the worker hands them a reporter, ``workers/reporting.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from automl_site.jobs import queue
from automl_site.jobs.checks import field_problems, json_problem, text_problem
from automl_site.jobs.files import store_file_atomically
from automl_site.jobs.models import (
    ACTIVE_STATUSES,
    Dataset,
    FpgaReport,
    Job,
    JobStatus,
    ModelFile,
    Trial,
)
from search_spaces import registry
from search_spaces.base import ConfigError, DataShape, json_safe

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Refused input: ``errors`` maps a field name to its messages (becomes a 400)."""

    def __init__(self, errors: dict[str, list[str] | str]) -> None:
        self.errors = {k: ([v] if isinstance(v, str) else list(v)) for k, v in errors.items()}
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))


def _conf(key: str) -> Any:
    return settings.AUTOML[key]


# --- submitting -------------------------------------------------------------------------------------


def _resolve_dataset(*, owner: AbstractBaseUser, kind_name: str, dataset: Dataset | int | str | None) -> Dataset:
    kind = registry.get_kind(kind_name)
    if dataset is None:
        dataset = getattr(kind, "default_dataset", "digits")
    if isinstance(dataset, Dataset):
        row = dataset
    else:
        text = str(dataset)
        # ASCII digits only: "²".isdigit() is true and int("²") a ValueError.
        query = Q(pk=int(text)) if re.fullmatch(r"[0-9]{1,18}", text) else Q(builtin=text)
        row = Dataset.objects.filter(query).filter(Q(owner=owner) | Q(owner__isnull=True)).first()
        if row is None:
            raise ServiceError({"dataset": f"no dataset {dataset!r}"})
    if row.owner_id not in (None, owner.pk):
        raise ServiceError({"dataset": f"no dataset {row.pk!r}"})
    modalities = getattr(kind, "modalities", ("image", "tabular"))
    if row.modality not in modalities:
        raise ServiceError(
            {
                "dataset": f"{kind_name} needs a dataset of modality {' or '.join(modalities)}, "
                f"{row.name!r} is {row.modality}"
            }
        )
    return row


def _data_shape(row: Dataset) -> DataShape:
    """The dataset as a kind's budget sees it: shape, classes, its sample count and a built-in's key."""
    from search_spaces.kit.datasets import BUILTIN_SAMPLES

    samples = row.num_samples or BUILTIN_SAMPLES.get(row.builtin)
    return DataShape(row.modality, tuple(row.input_shape), row.num_classes, samples, row.builtin)


@dataclass(frozen=True)
class JobPlan:
    """A job as :func:`job_submit` would write it: the config with its defaults filled, the dataset it runs on,
    its estimated budget (CPU-minutes) and, per field, what would still make the submit refuse it (the input
    model, a budget over ``MAX_BUDGET_PER_JOB``)."""

    config: dict[str, Any]
    dataset: Dataset
    budget: float
    problems: dict[str, list[str]]


def job_plan(
    *,
    owner: AbstractBaseUser,
    kind: str,
    name: str = "",
    config: dict[str, Any] | None = None,
    dataset: Dataset | int | str | None = None,
    model: ModelFile | None = None,
    parent: Job | None = None,
) -> JobPlan:
    """Every check :func:`job_submit` makes before it writes, writing nothing. What leaves nothing to size (an
    unknown kind, a config the schema refuses, no such dataset) raises :class:`ServiceError`; the rest is listed
    in the plan's ``problems``.

    A child job (``parent`` given, no ``dataset``) works on its parent's dataset; its input model, the parent's
    output or an upload, must be one the kind declares it takes, shaped for the dataset."""
    if kind not in registry.KINDS:
        raise ServiceError({"kind": f"unknown kind {kind!r}; one of: {', '.join(sorted(registry.KINDS))}"})
    job_kind = registry.get_kind(kind)
    # Before the schema: a key PostgreSQL cannot store, or a config nested thousands deep, must not reach
    # jsonschema's messages (which repeat it) or the database.
    problem = json_problem(config)
    if problem:
        raise ServiceError({"config": f"the config {problem}"})
    problem = text_problem(name or "")
    if problem:
        raise ServiceError({"name": f"the name {problem}"})
    try:
        config = job_kind.validate(config)
    except ConfigError as exc:
        raise ServiceError({f"config.{k}" if k != "config" else "config": v for k, v in exc.errors.items()}) from None
    if dataset is None and parent is not None and parent.owner_id == owner.pk and parent.dataset_id is not None:
        dataset = parent.dataset
    dataset_row = _resolve_dataset(owner=owner, kind_name=kind, dataset=dataset)
    errors: dict[str, list[str] | str] = {}
    if model is not None and parent is not None:
        errors["model"] = "give either model or parent, not both"
    elif parent is not None:
        errors.update(job_input_problems(owner=owner, kind=kind, dataset=dataset_row, parent=parent))
    elif model is not None:
        errors.update(job_input_problems(owner=owner, kind=kind, dataset=dataset_row, model=model))
    budget = job_kind.budget(config, _data_shape(dataset_row))
    if budget > _conf("MAX_BUDGET_PER_JOB"):
        errors["config"] = (
            f"estimated budget {budget:.1f} CPU-minutes is over the per-job limit of {_conf('MAX_BUDGET_PER_JOB'):.0f}"
        )
    return JobPlan(config, dataset_row, budget, ServiceError(errors).errors)


def job_submit(
    *,
    owner: AbstractBaseUser,
    kind: str,
    name: str = "",
    config: dict[str, Any] | None = None,
    dataset: Dataset | int | str | None = None,
    model: ModelFile | None = None,
    parent: Job | None = None,
) -> Job:
    """Validate a job whole (:func:`job_plan`) and queue it; nothing is written unless all of it is valid."""
    plan = job_plan(owner=owner, kind=kind, name=name, config=config, dataset=dataset, model=model, parent=parent)
    if plan.problems:
        raise ServiceError(plan.problems)
    with transaction.atomic():
        _check_active_limit(owner)
        job = Job.objects.create(
            owner=owner,
            kind=kind,
            name=name or "",
            config=plan.config,
            dataset=plan.dataset,
            model=model,
            parent=parent,
            budget=plan.budget,
            status=JobStatus.QUEUED,
        )
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return job


@dataclass(frozen=True)
class JobEstimate:
    """What :func:`job_estimate` answers: the job's plan and where its owner stands against the limits."""

    plan: JobPlan
    max_budget: float
    active_jobs: int
    max_active_jobs: int

    @property
    def over_budget(self) -> bool:
        return self.plan.budget > self.max_budget

    @property
    def accepted(self) -> bool:
        """Whether a submit of this job now would be accepted (the active-job limit counted without its lock)."""
        return not self.plan.problems and self.active_jobs < self.max_active_jobs


def job_estimate(
    *,
    owner: AbstractBaseUser,
    kind: str,
    name: str = "",
    config: dict[str, Any] | None = None,
    dataset: Dataset | int | str | None = None,
    model: ModelFile | None = None,
    parent: Job | None = None,
) -> JobEstimate:
    """The budget :func:`job_submit` would compute for this job and whether it would take it, writing nothing:
    the submit form shows it before anyone presses Submit. Refuses what the submit refuses before sizing."""
    plan = job_plan(owner=owner, kind=kind, name=name, config=config, dataset=dataset, model=model, parent=parent)
    active = Job.objects.filter(owner=owner, status__in=ACTIVE_STATUSES).count()
    return JobEstimate(plan, _conf("MAX_BUDGET_PER_JOB"), active, _conf("MAX_ACTIVE_JOBS_PER_USER"))


def _check_active_limit(owner: AbstractBaseUser) -> None:
    """Refuse one more active job for ``owner`` past ``MAX_ACTIVE_JOBS_PER_USER`` (paused jobs do not count).

    Call inside a transaction: the user's row stays locked until it ends, so two concurrent submits (or
    resumes) cannot both pass the limit."""
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    active = Job.objects.filter(owner=owner, status__in=ACTIVE_STATUSES).count()
    if active >= _conf("MAX_ACTIVE_JOBS_PER_USER"):
        raise ServiceError(
            {
                "non_field_errors": f"you have {active} queued or running jobs; the limit is "
                f"{_conf('MAX_ACTIVE_JOBS_PER_USER')}"
            }
        )


def job_input_problems(
    *,
    owner: AbstractBaseUser,
    kind: str,
    dataset: Dataset,
    parent: Job | None = None,
    model: ModelFile | None = None,
) -> dict[str, list[str]]:
    """Why ``parent``'s output model (or the uploaded ``model``) cannot be the input of a ``kind`` job on
    ``dataset``, per field (``parent``/``model``); empty when it can. The submit check and the parent picker's
    list both use it, so a job the form offers is one the service accepts."""
    job_kind = registry.get_kind(kind)
    field = "parent" if parent is not None else "model"
    if not job_kind.accepts_model:
        return {field: [f"{kind} does not take an input model"]}
    if parent is not None:
        if parent.owner_id != owner.pk:
            return {"parent": ["no such job"]}
        result = parent.result or {}
        if parent.status != JobStatus.SUCCEEDED or not result.get("output_model"):
            return {"parent": [f"job {parent.pk} has no output model (status {parent.status})"]}
        arch = result.get("output_arch")
        if not isinstance(arch, dict):
            return {"parent": [f"job {parent.pk}'s result does not say what its model is; re-run it"]}
        where = f"job {parent.pk} ({parent.kind}) gives a {arch.get('name')} model"
    else:
        assert model is not None
        if model.owner_id != owner.pk:
            return {"model": ["no such model"]}
        arch = model.architecture
        where = f"model {model.pk} is a {arch.get('name')}"
    data = DataShape(dataset.modality, tuple(dataset.input_shape), dataset.num_classes)
    problems = job_kind.input_model_problems(arch, data)
    if problems:
        return {field: [f"{where} that {kind} cannot start from on {dataset.name!r}: {'; '.join(problems)}"]}
    return {}


def job_parent_fits(*, owner: AbstractBaseUser, kind: str, parent: Job, dataset: Dataset | int | str | None) -> bool:
    """Whether ``job_submit`` would take ``parent`` as the input of a ``kind`` job on ``dataset`` (``None``: the
    parent's own dataset), as far as the input model goes."""
    try:
        row = _resolve_dataset(owner=owner, kind_name=kind, dataset=dataset if dataset is not None else parent.dataset)
    except ServiceError:
        return False
    return not job_input_problems(owner=owner, kind=kind, dataset=row, parent=parent)


def job_enqueue(*, job_id: int) -> bool:
    """Ring the broker's doorbell for a queued job. The database stays the source of truth.

    A broker that is down does not fail the caller: the job stays queued with no ``enqueued_at`` and
    the maintenance loop sends its message once the broker is back.
    """
    try:
        task_id = queue.send("workers.tasks.run_job", job_id, retry=True)
    except Exception:  # kombu raises several types for an unreachable broker
        log.warning("could not enqueue job %s; the maintenance loop will retry", job_id, exc_info=True)
        return False
    Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(enqueued_at=timezone.now(), celery_task_id=task_id)
    return True


def job_cancel(*, job: Job) -> Job:
    """Cancel a queued or paused job at once; ask a running one to stop (its worker confirms within seconds)."""
    now = timezone.now()
    if Job.objects.filter(id=job.pk, status__in=(JobStatus.QUEUED, JobStatus.PAUSED)).update(
        status=JobStatus.CANCELLED, finished_at=now, cancel_requested=True, progress_message="cancelled"
    ):
        if job.celery_task_id:
            queue.revoke(job.celery_task_id)
    elif not Job.objects.filter(id=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True):
        job.refresh_from_db()
        raise ServiceError(
            {"status": f"job {job.pk} is {job.status}; only queued, running or paused jobs can be cancelled"}
        )
    job.refresh_from_db()
    return job


def job_pause(*, job: Job) -> Job:
    """Pause a queued job at once (no worker will claim it); ask a running one to stop at its next heartbeat
    (``paused`` once its worker has let go). Its trials and checkpoint are kept for ``job_resume``. Pausing a
    paused job changes nothing."""
    if not Job.objects.filter(id=job.pk, status=JobStatus.QUEUED, cancel_requested=False).update(
        status=JobStatus.PAUSED, progress_message="paused before it started"
    ) and not Job.objects.filter(id=job.pk, status=JobStatus.RUNNING, cancel_requested=False).update(
        pause_requested=True
    ):
        job.refresh_from_db()
        if job.status != JobStatus.PAUSED:
            state = "being cancelled" if job.cancel_requested and job.status == JobStatus.RUNNING else job.status
            raise ServiceError({"status": f"job {job.pk} is {state}; only queued or running jobs can be paused"})
    job.refresh_from_db()
    return job


def job_resume(*, job: Job) -> Job:
    """Queue a paused job again; its run resumes from the checkpoint without redoing stored trials. It counts
    against the owner's active-job limit again, so a resume past the limit is refused like a submit."""
    with transaction.atomic():
        _check_active_limit(job.owner)
        if not Job.objects.filter(id=job.pk, status=JobStatus.PAUSED).update(
            status=JobStatus.QUEUED, enqueued_at=None, progress_message="resumed: waiting for a worker"
        ):
            job.refresh_from_db()
            pending = " (its pause is still pending; resume once it is paused)" if job.pause_requested else ""
            raise ServiceError({"status": f"job {job.pk} is {job.status}{pending}; only paused jobs can be resumed"})
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    job.refresh_from_db()
    return job


def job_rerun(*, job: Job, owner: AbstractBaseUser) -> Job:
    """A new job with the same kind, config, dataset and input."""
    return job_submit(
        owner=owner,
        kind=job.kind,
        name=job.name,
        config=job.config,
        dataset=job.dataset,
        model=job.model,
        parent=job.parent,
    )


# --- running (called by the worker's task) ----------------------------------------------------------


def job_claim(*, job_id: int, task_id: str, host: str) -> int | None:
    """Atomically take a queued (or orphaned) job; returns the attempt number, or None if not ours."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=_conf("STALE_AFTER_SECONDS"))
    claimable = Q(status=JobStatus.QUEUED, cancel_requested=False) | Q(
        status=JobStatus.RUNNING,
        heartbeat_at__lt=stale,
        cancel_requested=False,
        pause_requested=False,
        attempts__lt=F("stopped_runs") + _conf("MAX_ATTEMPTS"),
    )
    with transaction.atomic():
        rows = Job.objects.filter(claimable, id=job_id).update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            heartbeat_at=now,
            worker_host=host,
            celery_task_id=task_id,
            started_at=now,
            progress_message="starting",
            requeue_requested=False,
            pause_requested=False,
        )
        if rows != 1:
            return None
        return Job.objects.values_list("attempts", flat=True).get(id=job_id)


def optuna_storage_url() -> str:
    """The service's own database as an SQLAlchemy URL for Optuna's RDB storage."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}?timeout=30"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql+psycopg://{auth}{db.get('HOST') or 'localhost'}{port}/{db['NAME']}"


def job_workdir(*, job_id: int, label: str = "") -> Path:
    """A fresh scratch folder for one run of a job under ``AUTOML_WORK_DIR`` (the runner removes it)."""
    return Path(tempfile.mkdtemp(prefix=f"job{job_id}-{label}", dir=_workdir_root()))


def _workdir_root() -> Path:
    root = Path(settings.AUTOML_WORK_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _claimed(job_id: int, attempt: int) -> QuerySet[Job]:
    """The job's row while this run still holds it (the claim is fenced by the attempt number)."""
    return Job.objects.filter(id=job_id, status=JobStatus.RUNNING, attempts=attempt)


def job_succeed(*, job_id: int, attempt: int, result: dict[str, Any]) -> bool:
    """Record a finished run's result; False if the run had lost its claim meanwhile."""
    return bool(
        _claimed(job_id, attempt).update(
            status=JobStatus.SUCCEEDED,
            finished_at=timezone.now(),
            progress=1.0,
            progress_message="done",
            result=json_safe(result),
        )
    )


def job_fail(*, job_id: int, attempt: int, error: str) -> None:
    """Record that the algorithm failed, with its message."""
    _claimed(job_id, attempt).update(status=JobStatus.FAILED, finished_at=timezone.now(), error=error[:20000])


def job_stopped(*, job_id: int, attempt: int) -> str:
    """A run stopped on request: cancelled if a cancel was asked for, else paused if a pause was, else back to
    the queue (its worker is shutting down). A paused or re-queued run counts as stopped, not lost."""
    mine = _claimed(job_id, attempt).filter(cancel_requested=False)
    if mine.filter(pause_requested=True).update(
        status=JobStatus.PAUSED,
        pause_requested=False,
        requeue_requested=False,
        stopped_runs=F("stopped_runs") + 1,
        progress_message="paused: resume to continue from its checkpoint",
    ):
        return "paused"
    if mine.filter(requeue_requested=True).update(
        status=JobStatus.QUEUED,
        requeue_requested=False,
        stopped_runs=F("stopped_runs") + 1,
        progress_message="re-queued: its worker shut down",
    ):
        job_enqueue(job_id=job_id)
        return "re-queued"
    _claimed(job_id, attempt).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), progress_message="cancelled"
    )
    return "cancelled"


def job_helper_enqueue(*, job_id: int, index: int) -> None:
    """Queue helper run ``index`` of a running job; any free worker picks it up."""
    try:
        queue.send("workers.tasks.run_job_helper", job_id, index)
    except Exception:  # best effort: the job runs alone if helpers cannot be queued
        log.warning("could not queue helper %s of job %s", index, job_id, exc_info=True)


def jobs_release_worker(*, host: str) -> int:
    """A worker is shutting down gracefully: ask its running jobs to stop and go back to the queue."""
    return Job.objects.filter(status=JobStatus.RUNNING, worker_host=host).update(requeue_requested=True)


# --- maintenance (periodic) -------------------------------------------------------------------------


def jobs_reap() -> dict[str, int]:
    """Running jobs whose worker stopped beating: finish a cancel or a pause, re-queue, or fail after N lost runs.
    Paused jobs are not running, so they are left alone."""
    now = timezone.now()
    stale = Job.objects.filter(
        status=JobStatus.RUNNING, heartbeat_at__lt=now - dt.timedelta(seconds=_conf("STALE_AFTER_SECONDS"))
    )
    cancelled = stale.filter(cancel_requested=True).update(
        status=JobStatus.CANCELLED, finished_at=now, progress_message="cancelled (worker gone)"
    )
    # The run was lost while pausing; its checkpoint is what it last saved, as after a crash.
    paused = stale.filter(pause_requested=True).update(
        status=JobStatus.PAUSED, pause_requested=False, progress_message="paused (worker gone)"
    )
    lost_limit = F("stopped_runs") + _conf("MAX_ATTEMPTS")
    failed = stale.filter(attempts__gte=lost_limit).update(
        status=JobStatus.FAILED,
        finished_at=now,
        error=f"the worker running this job was lost {_conf('MAX_ATTEMPTS')} times; giving up",
    )
    requeued_ids = []
    for job in stale.filter(attempts__lt=lost_limit).only("id", "heartbeat_at"):
        if Job.objects.filter(id=job.pk, status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at).update(
            status=JobStatus.QUEUED, progress_message="re-queued: its worker was lost"
        ):
            requeued_ids.append(job.pk)
    for job_id in requeued_ids:
        job_enqueue(job_id=job_id)
    return {"cancelled": cancelled, "paused": paused, "failed": failed, "requeued": len(requeued_ids)}


def jobs_reenqueue_lost() -> int:
    """Queued jobs whose message the broker may have lost (e.g. Redis flushed) get a new one."""
    cutoff = timezone.now() - dt.timedelta(seconds=_conf("REQUEUE_AFTER_SECONDS"))
    ids = list(
        Job.objects.filter(status=JobStatus.QUEUED)
        .filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, created_at__lt=cutoff))
        .values_list("id", flat=True)
    )
    return sum(job_enqueue(job_id=job_id) for job_id in ids)


# --- datasets and models ----------------------------------------------------------------------------


def dataset_sync_builtins() -> None:
    """Make one Dataset row per built-in dataset of the training kit."""
    from search_spaces.kit import datasets

    for key, info in datasets.BUILTIN.items():
        Dataset.objects.update_or_create(
            builtin=key,
            defaults={
                "name": info.title,
                "description": info.description,
                "modality": info.modality,
                "input_shape": list(info.input_shape),
                "num_classes": info.num_classes,
                "num_samples": datasets.BUILTIN_SAMPLES.get(key),
                "owner": None,
            },
        )


def _check_upload_size(upload: UploadedFile) -> int:
    """Refuse an upload over ``MAX_UPLOAD_BYTES``; returns the limit."""
    limit = _conf("MAX_UPLOAD_BYTES")
    if upload.size is not None and upload.size > limit:
        raise ServiceError({"file": f"file is {upload.size} bytes; the limit is {limit}"})
    return limit


def _check_quota(owner: AbstractBaseUser, upload: UploadedFile) -> None:
    """Refuse an upload that would take the owner past ``STORAGE_QUOTA_BYTES`` (uploads and artifacts)."""
    from automl_site.jobs.selectors import storage_used

    quota, used, incoming = _conf("STORAGE_QUOTA_BYTES"), storage_used(user=owner), upload.size or 0
    if used + incoming > quota:
        raise ServiceError(
            {
                "file": f"this file ({incoming:,} bytes) would take your storage past its quota: you keep "
                f"{used:,} of {quota:,} bytes; delete datasets, models or jobs to make room"
            }
        )


def _upload_name(name: str, upload: UploadedFile, default: str) -> str:
    """The row's name: the one given, else the file's stem, cut to the 200 characters the column holds, and
    without what text cannot hold (the file name is the client's to choose)."""
    text = name or Path(upload.name or "").stem or default
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text[:200] or default


def _save_upload_to_temp(upload: UploadedFile, suffix: str, owner: AbstractBaseUser | None = None) -> Path:
    _check_upload_size(upload)
    if owner is not None:
        _check_quota(owner, upload)
    tmp_dir = _workdir_root() / "uploads"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=suffix, dir=tmp_dir)
    with open(fd, "wb") as fh:
        for chunk in upload.chunks():
            fh.write(chunk)
    return Path(name)


def dataset_upload(*, owner: AbstractBaseUser, name: str, upload: UploadedFile) -> Dataset:
    """Check an uploaded ``.npz``/``.csv`` (no pickle, sane shapes) and keep it."""
    from search_spaces.kit import datasets

    suffix = Path(upload.name or "").suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise ServiceError({"file": "upload a .npz (arrays x, y) or a .csv (last column: label)"})
    tmp = _save_upload_to_temp(upload, suffix, owner)
    limits = datasets.UploadLimits(max_bytes=_conf("MAX_DATASET_BYTES"), max_features=_conf("MAX_DATASET_FEATURES"))
    try:
        try:
            summary = datasets.inspect(tmp, limits)
        except datasets.DatasetError as exc:
            raise ServiceError({"file": str(exc)}) from None
        with transaction.atomic():
            row = Dataset.objects.create(
                owner=owner,
                name=_upload_name(name, upload, "dataset"),
                modality=summary["modality"],
                input_shape=list(summary["input_shape"]),
                num_classes=summary["num_classes"],
                num_samples=summary["num_samples"],
                class_counts=list(summary["class_counts"]),
            )
            relative, size, digest = store_file_atomically(tmp, f"datasets/user_{owner.pk}/{row.pk}{suffix}")
            row.file.name, row.size_bytes, row.sha256 = relative, size, digest
            row.save(update_fields=["file", "size_bytes", "sha256"])
        return row
    finally:
        tmp.unlink(missing_ok=True)


def model_upload(
    *, owner: AbstractBaseUser, name: str, upload: UploadedFile, architecture: dict[str, Any] | None
) -> ModelFile:
    """Keep an uploaded ``state_dict`` after loading it with ``weights_only=True`` into its architecture; an
    architecture over ``MAX_MODEL_PARAMS`` / ``MAX_MODEL_ACTIVATIONS`` is refused before the model is built."""
    from search_spaces.kit import models as kit_models
    from search_spaces.kit.sizing import SizeLimits

    if architecture is not None:
        problem = json_problem(architecture)
        if problem:
            raise ServiceError({"architecture": f"the architecture {problem}"})
    tmp = _save_upload_to_temp(upload, ".pt", owner)
    limits = SizeLimits(max_params=_conf("MAX_MODEL_PARAMS"), max_activations=_conf("MAX_MODEL_ACTIVATIONS"))
    try:
        try:
            model, arch = kit_models.load_model(tmp, architecture=architecture, limits=limits)
        except (kit_models.ModelError, ValueError, KeyError, TypeError) as exc:
            raise ServiceError({"file": str(exc)}) from None
        problem = json_problem(arch)
        if problem:  # an architecture stored in the file is the client's too
            raise ServiceError({"file": f"the file's architecture {problem}"})
        params = sum(p.numel() for p in model.parameters())
        with transaction.atomic():
            row = ModelFile.objects.create(
                owner=owner, name=_upload_name(name, upload, "model"), architecture=arch, sha256="", params=params
            )
            relative, size, digest = store_file_atomically(tmp, f"models/user_{owner.pk}/{row.pk}.pt")
            row.file.name, row.size_bytes, row.sha256 = relative, size, digest
            row.save(update_fields=["file", "size_bytes", "sha256"])
        return row
    finally:
        tmp.unlink(missing_ok=True)


def fpga_report_import(
    *, owner: AbstractBaseUser, job_id: int, trial_number: int | None, upload: UploadedFile
) -> list[FpgaReport]:
    """Parse an uploaded synthesis report (or an archive of a report directory) and keep each report it
    holds as an FPGA report of the owner's job/trial, beside the estimate. The applied configuration
    (reuse factors, precision, strategy) and the accuracies are copied from that trial's estimate: the
    report is taken to be the synthesis of that trial's archived project."""
    from search_spaces.hls.reports import ReportError, read_upload

    job = Job.objects.filter(owner=owner, pk=job_id).first()
    if job is None:
        raise ServiceError({"job": f"you have no job {job_id}"})
    trial = None
    if trial_number is not None:
        trial = Trial.objects.filter(job=job, number=trial_number).first()
        if trial is None:
            raise ServiceError({"trial": f"job {job_id} has no trial {trial_number}"})
    limit = _check_upload_size(upload)
    data = upload.read(limit + 1)
    try:
        reports = read_upload(upload.name or "report", data, max_bytes=limit)
    except ReportError as exc:
        raise ServiceError({"file": str(exc)}) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, OverflowError) as exc:
        # An archive member that does not inflate, a number no tool writes (inf as a count), ...
        raise ServiceError({"file": f"cannot read the report (corrupt or truncated?): {exc}"}) from None
    estimate = FpgaReport.objects.filter(job=job, trial=trial, source=FpgaReport.Source.ESTIMATE).first()
    copied: dict[str, Any] = {}
    if estimate is not None:
        copied = {
            "reuse_factor": estimate.reuse_factor,
            "precision": estimate.precision,
            "strategy": estimate.strategy,
            "io_type": estimate.io_type,
            "fixed_point_accuracy": estimate.fixed_point_accuracy,
            "float_accuracy": estimate.float_accuracy,
        }
    rows = []
    with transaction.atomic():
        for report in reports:
            fields = report.fields()
            fields["part"] = fields["part"] or (estimate.part if estimate else "")
            fields["clock_period_ns"] = fields["clock_period_ns"] or (estimate.clock_period_ns if estimate else 0.0)
            fields["raw"] = {**fields["raw"], "imported_by": owner.get_username()}
            fields = {**fields, "raw": json_safe(fields["raw"]), "utilisation": json_safe(fields["utilisation"])}
            problems = field_problems(FpgaReport, fields)
            if problems:  # a number no synthesis run reports, a part name too long, a NUL in a name, ...
                raise ServiceError(
                    {"file": [f"{fields['raw'].get('file', 'the report')}: {k} {v}" for k, v in problems.items()]}
                )
            rows.append(FpgaReport.objects.create(job=job, trial=trial, **copied, **json_safe(fields)))
    log.info("imported %d synthesis report(s) for job %s trial %s", len(rows), job.pk, trial_number)
    return rows


# --- deleting -----------------------------------------------------------------------------------------------


def _unlink_on_commit(paths: list[str]) -> None:
    """Remove stored files once the rows that named them are gone for good (a rolled-back delete keeps both)."""
    media = Path(settings.MEDIA_ROOT).resolve()

    def unlink() -> None:
        for name in paths:
            path = (media / name).resolve()
            if path.is_relative_to(media):
                path.unlink(missing_ok=True)

    transaction.on_commit(unlink)


def job_delete(*, job: Job) -> None:
    """Remove a job that is not running, with its trials, metric points, artifacts (and their files), FPGA
    reports and checkpoint; refused while a queued, running or paused child still needs its output model. A
    queued job is taken off the queue: its row is locked, so a worker's claim waits and then finds nothing."""
    with transaction.atomic():
        row = Job.objects.select_for_update().filter(pk=job.pk).first()
        if row is None:
            return
        if row.status == JobStatus.RUNNING:
            raise ServiceError({"status": f"job {row.pk} is running; cancel it first, then delete it"})
        # A child that has yet to run (or to resume) starts from this job's output model.
        _in_use_by_active_jobs(Job.objects.filter(parent=row), f"job {row.pk} (as parent)")
        files = list(row.artifacts.values_list("file", flat=True))
        task_id = row.celery_task_id if row.status == JobStatus.QUEUED else ""
        row.delete()  # trials, metric points, artifacts, FPGA reports and the checkpoint cascade
        _unlink_on_commit([f for f in files if f])
    if task_id:
        queue.revoke(task_id)


def _in_use_by_active_jobs(queryset: QuerySet[Job], what: str) -> None:
    # A paused job will run again: it needs its data and input model as much as a queued one.
    pending = (*ACTIVE_STATUSES, JobStatus.PAUSED)
    active = sorted(queryset.filter(status__in=pending).values_list("pk", flat=True))
    if active:
        jobs = ", ".join(str(pk) for pk in active[:10])
        raise ServiceError(
            {"non_field_errors": f"{what} is used by queued, running or paused job(s) {jobs}; wait or cancel"}
        )


def dataset_delete(*, owner: AbstractBaseUser, dataset: Dataset) -> None:
    """Remove an uploaded dataset and its file; refused for a built-in one or one a queued or running job uses.
    Finished jobs that used it keep their results and lose the link."""
    if dataset.owner_id != owner.pk:
        raise ServiceError({"non_field_errors": "built-in datasets cannot be deleted"})
    with transaction.atomic():
        row = Dataset.objects.select_for_update().get(pk=dataset.pk)
        _in_use_by_active_jobs(Job.objects.filter(dataset=row), f"dataset {row.pk}")
        Job.objects.filter(dataset=row).update(dataset=None)
        files = [row.file.name] if row.file else []
        row.delete()
        _unlink_on_commit(files)


def model_delete(*, owner: AbstractBaseUser, model: ModelFile) -> None:
    """Remove an uploaded model and its file; refused while a queued or running job takes it as input."""
    if model.owner_id != owner.pk:
        raise ServiceError({"non_field_errors": "no such model"})
    with transaction.atomic():
        row = ModelFile.objects.select_for_update().get(pk=model.pk)
        _in_use_by_active_jobs(Job.objects.filter(model=row), f"model {row.pk}")
        Job.objects.filter(model=row).update(model=None)
        files = [row.file.name] if row.file else []
        row.delete()
        _unlink_on_commit(files)


def checkpoints_expire() -> int:
    """Delete the checkpoints of jobs that ended more than ``CHECKPOINT_RETENTION_SECONDS`` ago: the database
    row a resume reads and the job's ``checkpoint`` artifacts (with their files). Returns the jobs pruned."""
    from automl_site.jobs.models import FINAL_STATUSES, Artifact, JobCheckpoint

    cutoff = timezone.now() - dt.timedelta(seconds=_conf("CHECKPOINT_RETENTION_SECONDS"))
    ended = Job.objects.filter(status__in=FINAL_STATUSES, finished_at__lt=cutoff)
    with transaction.atomic():
        rows = JobCheckpoint.objects.filter(job__in=ended)
        artifacts = Artifact.objects.filter(job__in=ended, kind="checkpoint")
        jobs = set(rows.values_list("job_id", flat=True)) | set(artifacts.values_list("job_id", flat=True))
        files = list(artifacts.values_list("file", flat=True))
        rows.delete()
        artifacts.delete()
        _unlink_on_commit([f for f in files if f])
    return len(jobs)
