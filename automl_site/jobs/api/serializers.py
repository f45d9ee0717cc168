"""Shapes of the API's JSON. Validation of meaning lives in the services, not here."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from automl_site.jobs import selectors
from automl_site.jobs.models import Artifact, Dataset, FpgaReport, Job, MetricPoint, ModelFile, Trial
from search_spaces import registry
from search_spaces.base import METRIC_GROUPS


class ObjectiveSerializer(serializers.Serializer):
    name = serializers.CharField()
    direction = serializers.ChoiceField(choices=["maximize", "minimize"])
    unit = serializers.CharField(allow_blank=True)


class QueueSerializer(serializers.Serializer):
    ahead = serializers.IntegerField(help_text="queued jobs (anyone's) submitted before this one")
    running = serializers.IntegerField(help_text="jobs running now, on every worker")


class JobSerializer(serializers.ModelSerializer):
    children = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="jobs that took this job's output model as their input"
    )
    objectives = serializers.SerializerMethodField(
        help_text="what each entry of a trial's values is, in order (the kind's declaration for this config)"
    )
    queue = serializers.SerializerMethodField(
        help_text="for a queued job, in GET /jobs/{id}/ only: what it waits for; null otherwise"
    )

    @extend_schema_field(ObjectiveSerializer(many=True))
    def get_objectives(self, obj: Job) -> list[dict[str, str]]:
        kind = registry.KINDS.get(obj.kind)
        return [asdict(o) for o in kind.objectives(obj.config)] if kind is not None else []

    @extend_schema_field(QueueSerializer(allow_null=True))
    def get_queue(self, obj: Job) -> dict[str, int] | None:
        view = self.context.get("view")
        if getattr(view, "action", None) != "retrieve":  # a count per row would slow the list down
            return None
        return selectors.job_queue_state(job=obj)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "name",
            "status",
            "progress",
            "progress_message",
            "config",
            "dataset",
            "model",
            "parent",
            "children",
            "objectives",
            "result",
            "error",
            "budget",
            "attempts",
            "cancel_requested",
            "pause_requested",
            "worker_host",
            "queue",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


LIST_LEFT_OUT = ("config", "objectives", "result", "error")


class JobListSerializer(JobSerializer):
    """A row of ``GET /jobs/``: the job without its config, result and error (``GET /jobs/{id}/`` has them), which
    were 18 times the bytes the list page shows; the result's first headline stands in for the result."""

    headline = serializers.JSONField(
        read_only=True, allow_null=True, help_text="the first entry of result.summary (label, value, unit), if any"
    )

    class Meta(JobSerializer.Meta):
        fields = [f for f in JobSerializer.Meta.fields if f not in LIST_LEFT_OUT] + ["headline"]
        read_only_fields = fields


class JobSubmitSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    config = serializers.JSONField(required=False, default=dict)
    dataset = serializers.CharField(
        max_length=64,
        required=False,
        allow_null=True,
        default=None,
        help_text="a dataset id or a built-in dataset key such as 'digits'",
    )
    model = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, help_text="an uploaded model's id"
    )
    parent = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="a succeeded job whose output model is this job's input",
    )

    def validate_config(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        return value


class JobEstimateSerializer(serializers.Serializer):
    config = serializers.JSONField(source="plan.config", help_text="the config with the kind's defaults filled")
    dataset = serializers.IntegerField(source="plan.dataset.pk", help_text="the dataset the job would run on")
    budget = serializers.FloatField(source="plan.budget", help_text="estimated CPU-minutes, as the submit computes it")
    max_budget = serializers.FloatField(help_text="the per-job budget limit in CPU-minutes")
    over_budget = serializers.BooleanField(help_text="whether the budget is over max_budget (the submit refuses it)")
    active_jobs = serializers.IntegerField(help_text="your queued and running jobs now")
    max_active_jobs = serializers.IntegerField(help_text="how many of them you may have at once")
    problems = serializers.DictField(
        source="plan.problems",
        child=serializers.ListField(child=serializers.CharField()),
        help_text="per field, what the submit would refuse besides the active-job limit (the input model, the "
        "budget); empty when nothing",
    )
    accepted = serializers.BooleanField(help_text="whether a submit of this job now would be accepted")


class MetricSpecSerializer(serializers.Serializer):
    name = serializers.CharField(
        help_text="a metric name or a glob pattern ('pretrain/*', '*/val_acc') of the metric points it covers"
    )
    unit = serializers.CharField(allow_blank=True, help_text="'fraction', '×', 'ns', ...; empty: a plain number")
    group = serializers.ChoiceField(choices=METRIC_GROUPS, help_text="the axis live curves of this metric share")
    description = serializers.CharField(allow_blank=True)


class JobKindSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    schema = serializers.JSONField()
    defaults = serializers.JSONField()
    accepts_model = serializers.BooleanField()
    input_families = serializers.ListField(
        child=serializers.CharField(), help_text="model families a job of this kind can start from"
    )
    fpga_reports = serializers.BooleanField(help_text="whether its jobs store FPGA resource reports")
    examples = serializers.DictField(
        child=serializers.JSONField(),
        help_text="named configs to submit as they are (filled with the defaults): at least 'tiny' (runs in "
        "seconds) and 'default'",
    )
    metrics = MetricSpecSerializer(
        many=True, help_text="the metric points its jobs report (first match wins), with unit and axis group"
    )
    modalities = serializers.ListField(child=serializers.CharField())
    default_dataset = serializers.CharField()


class TrialSerializer(serializers.ModelSerializer):
    class Meta:
        model = Trial
        fields = [
            "number",
            "params",
            "values",
            "metrics",
            "state",
            "attempt",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]


class MetricPointSerializer(serializers.ModelSerializer):
    trial = serializers.IntegerField(source="trial_number", allow_null=True)

    class Meta:
        model = MetricPoint
        fields = ["id", "trial", "step", "name", "value", "created_at"]


class MetricSeriesSerializer(serializers.Serializer):
    name = serializers.CharField()
    trial = serializers.IntegerField(allow_null=True, help_text="null: a job-level series")
    id = serializers.ListField(child=serializers.IntegerField(), help_text="the kept points' ids")
    step = serializers.ListField(child=serializers.IntegerField())
    value = serializers.ListField(child=serializers.FloatField())
    points = serializers.IntegerField(help_text="how many points the series has in all")
    sampled = serializers.BooleanField(help_text="whether points were left out (then first, last and extremes kept)")


class MetricSeriesAnswerSerializer(serializers.Serializer):
    """Documents ``GET /jobs/{id}/metrics/?max_points=``; the selector builds the answer itself."""

    last_id = serializers.IntegerField(help_text="the newest point covered: poll ?since= this for the rest")
    max_points = serializers.IntegerField()
    more_series = serializers.ListField(
        child=serializers.CharField(), help_text="metrics whose older trials' series were left out"
    )
    series = MetricSeriesSerializer(many=True)


class ArtifactSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["id", "job", "name", "kind", "size_bytes", "sha256", "created_at", "download_url"]

    def get_download_url(self, obj: Artifact) -> str:
        return f"/api/v1/artifacts/{obj.pk}/download/"


class FpgaReportSerializer(serializers.ModelSerializer):
    trial_number = serializers.SerializerMethodField(help_text="the number of the trial it reports on, if any")

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_trial_number(self, obj: FpgaReport) -> int | None:
        if hasattr(obj, "trial_number"):  # the list's annotation: no trial row loaded per report
            return obj.trial_number
        return obj.trial.number if obj.trial_id is not None else None

    class Meta:
        model = FpgaReport
        exclude = ["raw"]


class FpgaReportImportSerializer(serializers.Serializer):
    job = serializers.IntegerField(min_value=1, help_text="your job the report belongs to")
    trial = serializers.IntegerField(
        min_value=0,
        required=False,
        allow_null=True,
        default=None,
        help_text="trial number whose archived project was synthesised",
    )
    file = serializers.FileField(
        help_text="*_csynth.rpt, *_csynth.xml, vivado_synth.rpt, or a .zip/.tar.gz of the report directory"
    )


class DatasetSerializer(serializers.ModelSerializer):
    is_builtin = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "builtin",
            "is_builtin",
            "description",
            "modality",
            "input_shape",
            "num_classes",
            "num_samples",
            "class_counts",
            "size_bytes",
            "sha256",
            "created_at",
        ]

    def get_is_builtin(self, obj: Dataset) -> bool:
        return bool(obj.builtin)


class DatasetUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    file = serializers.FileField()


class ModelFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelFile
        fields = ["id", "name", "architecture", "size_bytes", "sha256", "params", "created_at"]


class ModelUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    file = serializers.FileField(help_text="a state_dict saved with torch.save (loaded with weights_only=True)")
    architecture = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="JSON: built-in architecture config, if the file lacks one",
    )

    def validate_architecture(self, value: str) -> dict[str, Any] | None:
        if not value:
            return None
        try:
            arch = json.loads(value)
        except json.JSONDecodeError as exc:
            raise serializers.ValidationError(f"not JSON: {exc}") from None
        except RecursionError:
            raise serializers.ValidationError("not JSON this service reads: nested too deeply") from None
        if not isinstance(arch, dict):
            raise serializers.ValidationError("must be a JSON object")
        return arch
