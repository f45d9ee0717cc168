"""Shapes of the API's JSON. Validation of meaning lives in the services, not here."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from automl_site.jobs.models import Artifact, Dataset, FpgaReport, Job, MetricPoint, ModelFile, Trial
from search_spaces.base import METRIC_GROUPS


class JobSerializer(serializers.ModelSerializer):
    children = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="jobs that took this job's output model as their input"
    )

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
            "result",
            "error",
            "budget",
            "attempts",
            "cancel_requested",
            "worker_host",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
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


class ArtifactSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["id", "job", "name", "kind", "size_bytes", "sha256", "created_at", "download_url"]

    def get_download_url(self, obj: Artifact) -> str:
        return f"/api/v1/artifacts/{obj.pk}/download/"


class FpgaReportSerializer(serializers.ModelSerializer):
    trial_number = serializers.IntegerField(source="trial.number", allow_null=True, default=None)

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
