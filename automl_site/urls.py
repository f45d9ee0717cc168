from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from automl_site.jobs.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("automl_site.jobs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("healthz", healthz, name="healthz"),
    path("", include("frontend.urls")),
]

handler404 = "automl_site.jobs.api.errors.not_found"
