from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from automl_site.jobs.auth import LoginView
from frontend import views

urlpatterns = [
    path("login/", LoginView.as_view(template_name="frontend/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.job_list, name="job-list"),
    path("submit/", views.job_submit, name="job-submit"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
]
