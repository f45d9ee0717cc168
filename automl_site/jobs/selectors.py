"""Reads: every query the API and pages make, scoped to the asking user."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Max, Prefetch, Q, QuerySet
from django.db.models.fields.json import KeyTransform

from automl_site.jobs.models import Artifact, Dataset, FpgaReport, Job, JobStatus, MetricPoint, ModelFile, Trial
from automl_site.jobs.sampling import minmax_indices

MAX_METRIC_NAMES = 200


def job_list(*, user: AbstractBaseUser) -> QuerySet[Job]:
    children = Prefetch("children", queryset=Job.objects.only("id", "parent_id").order_by("id"))
    return Job.objects.filter(owner=user).select_related("dataset").prefetch_related(children)


def job_list_rows(*, user: AbstractBaseUser) -> QuerySet[Job]:
    """``job_list`` for the list's rows: the big JSON and text columns left in the database, the result's first
    headline taken out of it by the database."""
    headline = KeyTransform("0", KeyTransform("summary", "result"))
    rows = job_list(user=user).select_related(None)  # a row names its dataset by id
    return rows.defer("config", "result", "error").annotate(headline=headline)


def trial_list(*, job: Job) -> QuerySet[Trial]:
    return Trial.objects.filter(job=job).order_by("number")


def metric_list(*, job: Job, since: int = 0) -> QuerySet[MetricPoint]:
    return MetricPoint.objects.filter(job=job, id__gt=since).order_by("id")


def metric_series(*, job: Job, max_points: int, max_series: int) -> dict[str, Any]:
    """A job's curves for a first drawing, bounded whatever the job stored: per metric name its job-level series and
    the series of its ``max_series`` latest trials (``more_series`` says whether older trials have some too), each
    down-sampled to ``max_points`` (first, last, and each bucket's extremes), as columns. ``last_id`` is the newest
    point the answer covers: polling ``?since=last_id`` then brings exactly what came after.

    Every query walks the ``(job, name, trial_number, step)`` index: names and trial numbers by seeks, the points
    with ``values_list`` (no model objects)."""
    points = MetricPoint.objects.filter(job=job).order_by()
    last_id = points.aggregate(last=Max("id"))["last"] or 0
    points = points.filter(id__lte=last_id)
    names: list[str] = []
    while len(names) < MAX_METRIC_NAMES:  # a loose index scan: one seek per name, however many points each has
        following = points.filter(name__gt=names[-1]) if names else points
        name = following.order_by("name").values_list("name", flat=True).first()
        if name is None:
            break
        names.append(name)
    series: list[dict[str, Any]] = []
    more_series: list[str] = []
    for name in names:
        of_name = points.filter(name=name)
        trials = list(
            of_name.filter(trial_number__isnull=False)
            .order_by("-trial_number")
            .values_list("trial_number", flat=True)
            .distinct()[: max_series + 1]
        )
        if len(trials) > max_series:
            more_series.append(name)
            trials = trials[:max_series]
        rows = of_name.filter(Q(trial_number__in=trials) | Q(trial_number__isnull=True)).order_by(
            F("trial_number").asc(nulls_first=True), "step", "id"
        )
        current: dict[str, Any] | None = None
        for point_id, trial, step, value in rows.values_list("id", "trial_number", "step", "value").iterator(
            chunk_size=10_000
        ):
            if current is None or current["trial"] != trial:
                current = {"name": name, "trial": trial, "id": [], "step": [], "value": []}
                series.append(current)
            current["id"].append(point_id)
            current["step"].append(step)
            current["value"].append(value)
    for one in series:
        one["points"] = len(one["id"])
        keep = minmax_indices(one["value"], max_points)
        if len(keep) < one["points"]:
            for column in ("id", "step", "value"):
                one[column] = [one[column][i] for i in keep]
        one["sampled"] = len(keep) < one["points"]
    return {"last_id": last_id, "max_points": max_points, "more_series": more_series, "series": series}


def artifact_list(*, user: AbstractBaseUser) -> QuerySet[Artifact]:
    return Artifact.objects.filter(job__owner=user)


def fpga_report_list(*, user: AbstractBaseUser) -> QuerySet[FpgaReport]:
    """The reports without their ``raw`` report (the API never shows it) and with the trial's number joined in,
    not each trial's row (its params, values and metrics JSON) loaded to read one integer."""
    return FpgaReport.objects.filter(job__owner=user).defer("raw").annotate(trial_number=F("trial__number"))


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
