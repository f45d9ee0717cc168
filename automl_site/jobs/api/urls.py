from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from automl_site.jobs.api import views
from automl_site.jobs.auth import TokenView

router = DefaultRouter()
router.register("job-kinds", views.JobKindViewSet, basename="job-kind")
router.register("jobs", views.JobViewSet, basename="job")
router.register("artifacts", views.ArtifactViewSet, basename="artifact")
router.register("fpga-reports", views.FpgaReportViewSet, basename="fpga-report")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("models", views.ModelFileViewSet, basename="model")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("", include(router.urls)),
]
