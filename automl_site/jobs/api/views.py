"""The REST API (PRODUCT.md's contract table). Views translate HTTP to service and selector calls."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from automl_site.jobs import selectors, services
from automl_site.jobs.api import serializers as s
from automl_site.jobs.api import trial_filters
from automl_site.jobs.api.pagination import TrialPagination
from automl_site.jobs.api.schema import FieldErrorsSerializer
from automl_site.jobs.auth import UploadRateThrottle
from automl_site.jobs.models import Artifact, Dataset, FpgaReport, Job, JobStatus, ModelFile
from search_spaces import registry

MAX_METRIC_POINTS = 5000
MAX_SERIES_POINTS = 10_000
MAX_SERIES, DEFAULT_SERIES = 200, 20


def etagged(request: Request, data: Any) -> Response:
    """``data`` with an ETag of its content, or a bodiless 304 when the client already holds that content: what the
    job page polls every second or two stays off the wire while it is unchanged. ``no-cache`` makes the browser ask
    (with ``If-None-Match``) every time, so a change is never missed."""
    tag = '"' + hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32] + '"'
    held = {t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")}
    response = Response(status=status.HTTP_304_NOT_MODIFIED) if tag in held else Response(data)
    response["ETag"] = tag
    response["Cache-Control"] = "private, no-cache"
    return response


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        raise services.ServiceError({name: "must be an integer"}) from None
    if name == "since":  # any integer was taken before: a negative since reads from the start
        return value
    if value < low or (high is not None and value > high):
        raise services.ServiceError({name: f"must be from {low} to {high}"})
    return value


_DATETIME = serializers.DateTimeField()


def _iso(when: Any) -> str:
    """A time as DRF's DateTimeField writes it (UTC with a Z), for rows built without a serializer."""
    return _DATETIME.to_representation(when)


class JobFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=lambda: [(k, k) for k in registry.KINDS])
    status = django_filters.ChoiceFilter(choices=JobStatus.choices)
    parent_for = django_filters.ChoiceFilter(
        choices=lambda: [(k, k) for k in registry.KINDS],
        method="filter_parent_for",
        label="only jobs whose output model a job of this kind can start from (the submit check's own rule), on "
        "the job's own dataset or on for_dataset",
    )
    for_dataset = django_filters.CharFilter(
        method="filter_noop", label="with parent_for: the dataset (id or built-in key) the child job will use"
    )

    class Meta:
        model = Job
        fields = ["kind", "status", "parent_for", "for_dataset"]

    def filter_noop(self, queryset: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
        return queryset

    def filter_parent_for(self, queryset: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
        user = self.request.user
        dataset = self.data.get("for_dataset") or None
        # the fit check reads each candidate's result and config, which the list's rows leave out
        candidates = queryset.filter(status=JobStatus.SUCCEEDED, result__has_key="output_arch").defer(None)
        fitting = [
            job.pk
            for job in candidates.select_related("dataset")
            if services.job_parent_fits(owner=user, kind=value, parent=job, dataset=dataset)
        ]
        return queryset.filter(pk__in=fitting)


class OwnedMixin:
    """Querysets scoped to the asking user through a selector (empty while the schema is generated).

    A ``POST`` to a viewset that ``takes_uploads`` counts against the user's upload rate."""

    owned_model: Any = None
    selector: Any = None
    takes_uploads = False

    def get_throttles(self):  # noqa: ANN201
        throttles = super().get_throttles()  # type: ignore[misc]
        if self.request.method == "POST" and self.takes_uploads:
            throttles.append(UploadRateThrottle())
        return throttles

    def get_queryset(self):  # noqa: ANN201
        if getattr(self, "swagger_fake_view", False):
            return self.owned_model.objects.none()
        return type(self).selector(user=self.request.user)


class JobKindViewSet(viewsets.GenericViewSet):
    """Every job kind with the JSON Schema of its config and its defaults."""

    serializer_class = s.JobKindSerializer
    lookup_value_regex = "[a-z0-9_]+"
    filter_backends: list[Any] = []  # the kinds are the registry's, not a queryset

    @staticmethod
    def _describe(kind: Any) -> dict[str, Any]:
        return {
            "name": kind.name,
            "title": kind.title,
            "description": kind.description,
            "schema": kind.schema,
            "defaults": kind.defaults(),
            "accepts_model": kind.accepts_model,
            "input_families": list(kind.input_families),
            "fpga_reports": kind.fpga_reports,
            "examples": kind.examples,
            "metrics": [asdict(spec) for spec in kind.metrics],
            "modalities": list(getattr(kind, "modalities", ("image", "tabular"))),
            "default_dataset": getattr(kind, "default_dataset", "digits"),
        }

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset([self._describe(k) for k in registry.KINDS.values()])
        return self.get_paginated_response(page)

    @extend_schema(parameters=[OpenApiParameter("id", str, OpenApiParameter.PATH, description="the kind's name")])
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        if pk not in registry.KINDS:
            raise Http404
        return Response(self._describe(registry.get_kind(pk)))


class JobViewSet(
    OwnedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Your jobs: submit, list, inspect, cancel, pause, resume, re-run, and their trials, curves and files."""

    serializer_class = s.JobSerializer
    filterset_class = JobFilter

    owned_model = Job
    selector = staticmethod(selectors.job_list)

    def get_queryset(self):  # noqa: ANN201
        if self.action == "list" and not getattr(self, "swagger_fake_view", False):
            return selectors.job_list_rows(user=self.request.user)
        return super().get_queryset()

    def get_serializer_class(self):  # noqa: ANN201
        return s.JobListSerializer if self.action == "list" else s.JobSerializer

    def _own_or_400(self, model: Any, pk: int | None, field: str) -> Any:
        if pk is None:
            return None
        obj = model.objects.filter(pk=pk, owner=self.request.user).first()
        if obj is None:
            raise services.ServiceError({field: f"no such {field} {pk}"})
        return obj

    @extend_schema(request=s.JobSubmitSerializer, responses={201: s.JobSerializer})
    def create(self, request: Request) -> Response:
        data = s.JobSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = services.job_submit(
            owner=request.user,
            kind=v["kind"],
            name=v["name"],
            config=v["config"],
            dataset=v["dataset"],
            model=self._own_or_400(ModelFile, v["model"], "model"),
            parent=self._own_or_400(Job, v["parent"], "parent"),
        )
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.JobSubmitSerializer,
        responses={200: s.JobEstimateSerializer},
        description="Check a job as a submit would and estimate its budget, creating nothing: the same body as "
        "POST /jobs/. A config, kind or dataset the submit refuses gets the same 400; an input model that does "
        "not fit or a budget over the limit is listed in problems (a submit would refuse it).",
    )
    @action(detail=False, methods=["post"], filterset_class=None)
    def estimate(self, request: Request) -> Response:
        data = s.JobSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        estimate = services.job_estimate(
            owner=request.user,
            kind=v["kind"],
            name=v["name"],
            config=v["config"],
            dataset=v["dataset"],
            model=self._own_or_400(ModelFile, v["model"], "model"),
            parent=self._own_or_400(Job, v["parent"], "parent"),
        )
        return Response(s.JobEstimateSerializer(estimate).data)

    @extend_schema(
        description="Remove a job that is not running, with its trials, curves, artifacts (files too), FPGA "
        "reports and checkpoint; a queued job is taken off the queue.",
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.job_delete(job=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: s.JobSerializer, 304: OpenApiResponse(description="unchanged since If-None-Match")})
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return etagged(request, self.get_serializer(self.get_object()).data)

    @extend_schema(request=None, responses={200: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = services.job_cancel(job=self.get_object())
        return Response(s.JobSerializer(job).data)

    @extend_schema(request=None, responses={200: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Stop a queued or running job with its trials and checkpoint kept: a queued one is ``paused`` at once, a
        running one at its next heartbeat (``pause_requested`` until then). It frees its worker and its place in
        the active-job limit."""
        job = services.job_pause(job=self.get_object())
        return Response(s.JobSerializer(job).data)

    @extend_schema(request=None, responses={200: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Queue a paused job again; it continues from its checkpoint without redoing the trials it stored."""
        job = services.job_resume(job=self.get_object())
        return Response(s.JobSerializer(job).data)

    @extend_schema(request=None, responses={201: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str | None = None) -> Response:
        job = services.job_rerun(job=self.get_object(), owner=request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={
            200: s.TrialSerializer(many=True),
            400: OpenApiResponse(FieldErrorsSerializer, description="a state or ordering the trial list does not take"),
        },
        parameters=trial_filters.PARAMETERS,
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=TrialPagination)
    def trials(self, request: Request, pk: str | None = None) -> Response:
        trials = trial_filters.trials_filtered(request, selectors.trial_list(job=self.get_object()))
        page = self.paginate_queryset(trials)
        return etagged(request, self.get_paginated_response(s.TrialSerializer(page, many=True).data).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("since", int, description="only points with an id above this one"),
            OpenApiParameter(
                "max_points",
                int,
                description=f"instead of a page of points: the job's curves as columns, each series down-sampled to "
                f"at most this many points (2 to {MAX_SERIES_POINTS}; first, last and each bucket's lowest and "
                f"highest kept), for a first drawing; poll ?since=last_id for what comes after",
            ),
            OpenApiParameter(
                "max_series",
                int,
                description=f"with max_points: the latest trials whose series are sent per metric (1 to "
                f"{MAX_SERIES}, default {DEFAULT_SERIES}); the job-level series always are",
            ),
        ],
        responses={
            200: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="MetricAnswer",
                    serializers=[
                        inline_serializer(
                            "MetricPage",
                            {
                                "count": serializers.IntegerField(),
                                "next": serializers.CharField(allow_null=True),
                                "previous": serializers.CharField(allow_null=True),
                                "last_id": serializers.IntegerField(),
                                "results": s.MetricPointSerializer(many=True),
                            },
                        ),
                        s.MetricSeriesAnswerSerializer,
                    ],
                    resource_type_field_name=None,
                ),
                description="a page of points above since; with max_points (and no since) the curves as columns",
            ),
            400: OpenApiResponse(FieldErrorsSerializer, description="since or max_points is not an integer"),
        },
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def metrics(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        since = _int_param(request, "since", 0, 0, None)
        if "max_points" in request.query_params and "since" not in request.query_params:
            return Response(
                selectors.metric_series(
                    job=job,
                    max_points=_int_param(request, "max_points", 0, 2, MAX_SERIES_POINTS),
                    max_series=_int_param(request, "max_series", DEFAULT_SERIES, 1, MAX_SERIES),
                )
            )
        # values_list and a dict per row: model objects and a serializer cost 16x the SQL on a 5,000-point page
        rows = list(
            selectors.metric_list(job=job, since=since).values_list(
                "id", "trial_number", "step", "name", "value", "created_at"
            )[: MAX_METRIC_POINTS + 1]
        )
        more = len(rows) > MAX_METRIC_POINTS
        rows = rows[:MAX_METRIC_POINTS]
        last_id = rows[-1][0] if rows else since
        next_url = request.build_absolute_uri(f"?since={last_id}") if more else None
        return Response(
            {
                "count": len(rows),
                "next": next_url,
                "previous": None,
                "last_id": last_id,
                "results": [
                    {"id": i, "trial": t, "step": st, "name": n, "value": v, "created_at": _iso(c)}
                    for i, t, st, n, v, c in rows
                ],
            }
        )

    @extend_schema(responses={200: s.ArtifactSerializer(many=True)})
    @action(detail=True, methods=["get"], filterset_class=None)
    def artifacts(self, request: Request, pk: str | None = None) -> Response:
        page = self.paginate_queryset(self.get_object().artifacts.order_by("id"))
        return self.get_paginated_response(s.ArtifactSerializer(page, many=True).data)


INLINE_TYPES = (".svg", ".html", ".png")


class ArtifactViewSet(OwnedMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ArtifactSerializer

    owned_model = Artifact
    selector = staticmethod(selectors.artifact_list)

    @extend_schema(
        # The file as stored, in the media type its name says (JSON, SVG, PNG, a .zip, ...; octet-stream if none).
        responses={(200, "*/*"): OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter(
                "inline",
                bool,
                description="show a plot (.svg, .html, .png) in the browser instead of downloading it; "
                "served sandboxed (no access to this site's cookies or pages)",
            )
        ],
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        artifact = self.get_object()
        inline = request.query_params.get("inline") in ("1", "true") and artifact.name.lower().endswith(INLINE_TYPES)
        response = FileResponse(artifact.file.open("rb"), as_attachment=not inline, filename=artifact.name)
        response["X-Content-SHA256"] = artifact.sha256
        if inline:
            # A job's plot runs its own scripts (plotly) in an opaque origin: it can draw, not read this site.
            response["Content-Security-Policy"] = "sandbox allow-scripts"
            response["X-Frame-Options"] = "SAMEORIGIN"
            response["X-Content-Type-Options"] = "nosniff"
        return response


class FpgaReportFilter(django_filters.FilterSet):
    job = django_filters.NumberFilter(field_name="job_id")
    source = django_filters.CharFilter()


# What FpgaReportSerializer shows, as value names: every column but ``raw`` (a foreign key as its id, under the
# field's name, as the serializer gives it), and the selector's ``trial_number``.
_FPGA_LIST_FIELDS = [f.name for f in FpgaReport._meta.concrete_fields if f.name != "raw"] + ["trial_number"]


class FpgaReportViewSet(OwnedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """FPGA resource reports: the sweep's estimates, and synthesis reports imported beside them.

    ``POST`` (multipart) imports a real report for one of your jobs' trials: a Vivado/Vitis HLS
    ``*_csynth.rpt`` or ``*_csynth.xml``, Vivado's ``vivado_synth.rpt``, or the report directory as a
    ``.zip``/``.tar.gz``; each report found becomes one FPGA report with its ``source``."""

    serializer_class = s.FpgaReportSerializer
    filterset_class = FpgaReportFilter
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True

    owned_model = FpgaReport
    selector = staticmethod(selectors.fpga_report_list)

    def list(self, request: Request) -> Response:
        """The serializer's fields read as rows of values, not model instances run through the serializer: the job
        page asks for all of a job's reports (up to 1,000) every few seconds, and building and serializing 1,000
        instances cost ~200 ms of the ~250 ms answer (bench/scale.py)."""
        rows = self.paginate_queryset(self.filter_queryset(self.get_queryset()).values(*_FPGA_LIST_FIELDS))
        assert rows is not None  # the API always paginates
        for row in rows:
            row["created_at"] = _DATETIME.to_representation(row["created_at"])
        return etagged(request, self.get_paginated_response(rows).data)

    @extend_schema(request=s.FpgaReportImportSerializer, responses={201: s.FpgaReportSerializer(many=True)})
    def create(self, request: Request) -> Response:
        data = s.FpgaReportImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rows = services.fpga_report_import(
            owner=request.user,
            job_id=data.validated_data["job"],
            trial_number=data.validated_data["trial"],
            upload=data.validated_data["file"],
        )
        return Response(s.FpgaReportSerializer(rows, many=True).data, status=status.HTTP_201_CREATED)


class DatasetViewSet(
    OwnedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Built-in datasets and your uploads (``.npz`` with arrays ``x`` and ``y``, or CSV with the label last)."""

    serializer_class = s.DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True

    owned_model = Dataset
    selector = staticmethod(selectors.dataset_list)

    @extend_schema(request=s.DatasetUploadSerializer, responses={201: s.DatasetSerializer})
    def create(self, request: Request) -> Response:
        data = s.DatasetUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.dataset_upload(
            owner=request.user, name=data.validated_data["name"], upload=data.validated_data["file"]
        )
        return Response(s.DatasetSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        description="Remove your uploaded dataset and its file; refused for a built-in one or while a queued or "
        "running job uses it.",
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.dataset_delete(owner=request.user, dataset=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelFileViewSet(
    OwnedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Uploaded models: a ``state_dict`` for a built-in architecture (never an arbitrary pickle)."""

    serializer_class = s.ModelFileSerializer
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True

    owned_model = ModelFile
    selector = staticmethod(selectors.model_list)

    @extend_schema(request=s.ModelUploadSerializer, responses={201: s.ModelFileSerializer})
    def create(self, request: Request) -> Response:
        data = s.ModelUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row = services.model_upload(
            owner=request.user, name=v["name"], upload=v["file"], architecture=v["architecture"]
        )
        return Response(s.ModelFileSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        description="Remove your uploaded model and its file; refused while a queued or running job takes it.",
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.model_delete(owner=request.user, model=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
