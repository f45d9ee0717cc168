from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from automl_site.jobs.auth import LoginView
from frontend import views

urlpatterns = [
    path("login/", LoginView.as_view(template_name="frontend/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.job_list, name="job-list"),
    path("submit/", views.job_submit, name="job-submit"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("compare/", views.job_compare, name="job-compare"),
    path("datasets/", views.dataset_list, name="dataset-list"),
    # Pages that declare no icon (the API docs, the admin) make the browser ask for /favicon.ico.
    path("favicon.ico", RedirectView.as_view(url=static("frontend/favicon.svg"), permanent=True)),
    path("vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
]
