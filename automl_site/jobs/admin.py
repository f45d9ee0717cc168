"""Staff review: every job, trial and FPGA report, with filters, search, inlines and actions (cancel, pause,
resume, re-run)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from automl_site.jobs import services
from automl_site.jobs.models import Artifact, Dataset, FpgaReport, Job, MetricPoint, ModelFile, Trial
from search_spaces import registry
from search_spaces.base import TRIAL_STATES

INLINE_ROWS = 50  # a job can have 100,000 trials: its page shows the first rows and links to the rest
HEAVY_JOB_FIELDS = ("job__config", "job__result", "job__error")  # a changelist row shows a job by its name only


def pretty_json(value: object) -> str:
    return format_html(
        "<pre style='white-space:pre-wrap;max-width:60em'>{}</pre>", json.dumps(value, indent=2, sort_keys=True)
    )


class CappedInlineFormSet(BaseInlineFormSet):
    """The first ``INLINE_ROWS`` rows of an inline (they are read-only; the filtered changelist has them all)."""

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_capped"):
            self._capped = super().get_queryset()[:INLINE_ROWS]
        return self._capped


def changelist_link(model: type, label: str, **filters: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    url = reverse(f"admin:jobs_{model._meta.model_name}_changelist")
    return format_html("<a href='{}?{}'>{}</a>", url, query, label)


class ChoicesFilter(admin.SimpleListFilter):
    """A filter whose choices are known without a ``SELECT DISTINCT`` over the table (which Django's filter on a plain
    field runs on every changelist view: over a million metric points)."""

    options: tuple[str, ...] = ()

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(c, c) for c in self.options_now()]

    def options_now(self) -> tuple[str, ...]:
        return self.options

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() else queryset


class KindFilter(ChoicesFilter):
    title = "kind"
    parameter_name = "kind"

    def options_now(self) -> tuple[str, ...]:
        return tuple(sorted(registry.KINDS))


class JobKindFilter(KindFilter):
    parameter_name = "job__kind"


class TrialStateFilter(ChoicesFilter):
    title = "state"
    parameter_name = "state"
    options = tuple(TRIAL_STATES)


class TrialInline(admin.TabularInline):
    model = Trial
    formset = CappedInlineFormSet
    extra = 0
    verbose_name_plural = f"trials (the first {INLINE_ROWS}; 'all trials' above lists every one)"
    can_delete = False
    fields = ["number", "state", "params", "values", "metrics", "duration_seconds"]
    readonly_fields = fields
    show_change_link = True


class FpgaReportInline(admin.TabularInline):
    model = FpgaReport
    formset = CappedInlineFormSet
    extra = 0
    verbose_name_plural = f"FPGA reports (the first {INLINE_ROWS}; 'all FPGA reports' above lists every one)"
    can_delete = False
    fields = [
        "trial",
        "source",
        "part",
        "reuse_factor",
        "precision",
        "dsp",
        "lut",
        "ff",
        "bram",
        "latency_ns",
        "fixed_point_accuracy",
        "float_accuracy",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[FpgaReport]:
        # each row names its trial: joined, without the trial's JSON or the report's raw one
        heavy = ("raw", "trial__params", "trial__values", "trial__metrics")
        return super().get_queryset(request).select_related("trial").defer(*heavy)


class ArtifactInline(admin.TabularInline):
    model = Artifact
    formset = CappedInlineFormSet
    extra = 0
    can_delete = False
    fields = ["name", "kind", "size_bytes", "sha256", "file"]
    readonly_fields = fields


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "name",
        "owner",
        "status",
        "progress_percent",
        "attempts",
        "worker_host",
        "created_at",
        "finished_at",
    ]
    list_filter = [KindFilter, "status", "owner", "created_at"]
    search_fields = ["=id", "name", "kind", "owner__username", "error", "worker_host", "celery_task_id"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    ordering = ["-id"]
    show_full_result_count = False
    readonly_fields = [
        "all_trials",
        "all_fpga_reports",
        "config_pretty",
        "result_pretty",
        "progress",
        "progress_message",
        "status",
        "error",
        "attempts",
        "worker_host",
        "celery_task_id",
        "created_at",
        "enqueued_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "cancel_requested",
        "pause_requested",
        "stopped_runs",
        "budget",
    ]
    exclude = ["config", "result"]
    raw_id_fields = ["parent", "dataset", "model", "owner"]
    inlines = [TrialInline, FpgaReportInline, ArtifactInline]
    actions = ["cancel_jobs", "pause_jobs", "resume_jobs", "rerun_jobs"]

    @admin.display(description="all trials")
    def all_trials(self, obj: Job) -> str:
        return changelist_link(Trial, f"{obj.trials.count():,} trials", job__id__exact=obj.pk)

    @admin.display(description="all FPGA reports")
    def all_fpga_reports(self, obj: Job) -> str:
        return changelist_link(FpgaReport, f"{obj.fpga_reports.count():,} FPGA reports", job__id__exact=obj.pk)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name == "jobs_job_changelist":
            queryset = queryset.defer("config", "result", "error")  # the rows show none of them
        return queryset

    @admin.display(description="progress")
    def progress_percent(self, obj: Job) -> str:
        return f"{obj.progress:.0%}"

    @admin.display(description="config")
    def config_pretty(self, obj: Job) -> str:
        return pretty_json(obj.config)

    @admin.display(description="result")
    def result_pretty(self, obj: Job) -> str:
        return pretty_json(obj.result)

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done = 0
        for job in queryset:
            try:
                services.job_cancel(job=job)
                done += 1
            except services.ServiceError as exc:
                self.message_user(request, f"job {job.pk}: {exc}", messages.WARNING)
        self.message_user(request, f"cancel requested for {done} job(s)")

    def _each(self, request: HttpRequest, queryset: QuerySet[Job], service: Any, done_message: str) -> None:
        done = 0
        for job in queryset:
            try:
                service(job=job)
                done += 1
            except services.ServiceError as exc:
                self.message_user(request, f"job {job.pk}: {exc}", messages.WARNING)
        self.message_user(request, done_message.format(done))

    @admin.action(description="Pause selected jobs (checkpoint kept)")
    def pause_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._each(request, queryset, services.job_pause, "pause requested for {} job(s)")

    @admin.action(description="Resume selected paused jobs")
    def resume_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._each(request, queryset, services.job_resume, "{} job(s) queued again")

    @admin.action(description="Re-run selected jobs (as their owners)")
    def rerun_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            try:
                new = services.job_rerun(job=job, owner=job.owner)
                self.message_user(request, f"job {job.pk} re-run as job {new.pk}")
            except services.ServiceError as exc:
                self.message_user(request, f"job {job.pk}: {exc}", messages.WARNING)


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "number", "state", "values", "duration_seconds"]
    list_filter = [TrialStateFilter, JobKindFilter]
    search_fields = ["=job__id"]
    raw_id_fields = ["job"]
    inlines = [FpgaReportInline]
    list_select_related = ["job"]
    ordering = ["-id"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Trial]:
        return super().get_queryset(request).defer(*HEAVY_JOB_FIELDS)


@admin.register(FpgaReport)
class FpgaReportAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "job",
        "trial",
        "source",
        "part",
        "dsp",
        "lut",
        "ff",
        "bram",
        "latency_cycles",
        "latency_ns",
        "initiation_interval",
        "fixed_point_accuracy",
        "float_accuracy",
    ]
    list_filter = ["source"]  # a field with choices: no SELECT DISTINCT (part is searched instead)
    search_fields = ["=job__id", "part"]
    raw_id_fields = ["job", "trial"]
    list_select_related = ["job", "trial"]
    ordering = ["-id"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[FpgaReport]:
        heavy = ("trial__params", "trial__values", "trial__metrics", "raw")
        return super().get_queryset(request).defer(*HEAVY_JOB_FIELDS, *heavy)


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "name", "kind", "size_bytes", "sha256", "created_at"]
    list_filter = ["kind"]
    search_fields = ["=job__id", "name", "sha256"]
    raw_id_fields = ["job"]
    list_select_related = ["job"]
    ordering = ["-id"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Artifact]:
        return super().get_queryset(request).defer(*HEAVY_JOB_FIELDS)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "builtin", "owner", "modality", "num_classes", "num_samples", "size_bytes"]
    list_filter = ["modality"]
    search_fields = ["name", "builtin", "owner__username"]


@admin.register(ModelFile)
class ModelFileAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "params", "size_bytes", "created_at"]
    search_fields = ["name", "owner__username"]


@admin.register(MetricPoint)
class MetricPointAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "trial_number", "step", "name", "value"]
    # no filter on name: Django's would SELECT DISTINCT over every point on each view; search "=job id" instead
    search_fields = ["=job__id", "=name"]
    raw_id_fields = ["job"]
    list_select_related = ["job"]
    ordering = ["-id"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[MetricPoint]:
        return super().get_queryset(request).defer(*HEAVY_JOB_FIELDS)
