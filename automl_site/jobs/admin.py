"""Staff review: every job, trial and FPGA report, with filters, search, inlines and actions (cancel, pause,
resume, re-run)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from automl_site.jobs import services
from automl_site.jobs.models import Artifact, Dataset, FpgaReport, Job, MetricPoint, ModelFile, Trial


def pretty_json(value: object) -> str:
    return format_html(
        "<pre style='white-space:pre-wrap;max-width:60em'>{}</pre>", json.dumps(value, indent=2, sort_keys=True)
    )


class TrialInline(admin.TabularInline):
    model = Trial
    extra = 0
    can_delete = False
    fields = ["number", "state", "params", "values", "metrics", "duration_seconds"]
    readonly_fields = fields
    show_change_link = True


class FpgaReportInline(admin.TabularInline):
    model = FpgaReport
    extra = 0
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


class ArtifactInline(admin.TabularInline):
    model = Artifact
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
    list_filter = ["kind", "status", "owner", "created_at"]
    search_fields = ["=id", "name", "kind", "owner__username", "error", "worker_host", "celery_task_id"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    readonly_fields = [
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
    list_filter = ["state", "job__kind"]
    search_fields = ["=job__id"]
    raw_id_fields = ["job"]
    inlines = [FpgaReportInline]


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
    list_filter = ["source", "part", "strategy", "io_type"]
    search_fields = ["=job__id", "part"]
    raw_id_fields = ["job", "trial"]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "name", "kind", "size_bytes", "sha256", "created_at"]
    list_filter = ["kind"]
    search_fields = ["=job__id", "name", "sha256"]
    raw_id_fields = ["job"]


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
    list_filter = ["name"]
    search_fields = ["=job__id"]
    raw_id_fields = ["job"]
