"""Reads: every query the API and pages make, scoped to the asking user."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, Q, QuerySet

from automl_site.jobs.models import Artifact, Dataset, FpgaReport, Job, JobStatus, MetricPoint, ModelFile, Trial


def job_list(*, user: AbstractBaseUser) -> QuerySet[Job]:
    children = Prefetch("children", queryset=Job.objects.only("id", "parent_id").order_by("id"))
    return Job.objects.filter(owner=user).select_related("dataset").prefetch_related(children)


def trial_list(*, job: Job) -> QuerySet[Trial]:
    return Trial.objects.filter(job=job).order_by("number")


def metric_list(*, job: Job, since: int = 0) -> QuerySet[MetricPoint]:
    return MetricPoint.objects.filter(job=job, id__gt=since).order_by("id")


def artifact_list(*, user: AbstractBaseUser) -> QuerySet[Artifact]:
    return Artifact.objects.filter(job__owner=user)


def fpga_report_list(*, user: AbstractBaseUser) -> QuerySet[FpgaReport]:
    return FpgaReport.objects.filter(job__owner=user).select_related("trial")


def dataset_list(*, user: AbstractBaseUser) -> QuerySet[Dataset]:
    return Dataset.objects.filter(Q(owner=user) | Q(owner__isnull=True))


def model_list(*, user: AbstractBaseUser) -> QuerySet[ModelFile]:
    return ModelFile.objects.filter(owner=user)


def storage_used(*, user: AbstractBaseUser) -> int:
    """Bytes the user keeps under MEDIA_ROOT: uploaded datasets and models, and their jobs' artifacts."""
    from django.db.models import Sum

    return sum(
        queryset.aggregate(total=Sum("size_bytes"))["total"] or 0
        for queryset in (
            Dataset.objects.filter(owner=user),
            ModelFile.objects.filter(owner=user),
            Artifact.objects.filter(job__owner=user),
        )
    )


def job_queue_state(*, job: Job) -> dict[str, int] | None:
    """What a queued job waits for: the queued jobs (anyone's) submitted before it and the jobs running now;
    ``None`` for a job that is not queued."""
    if job.status != JobStatus.QUEUED:
        return None
    return {
        "ahead": Job.objects.filter(status=JobStatus.QUEUED, id__lt=job.pk).count(),
        "running": Job.objects.filter(status=JobStatus.RUNNING).count(),
    }
