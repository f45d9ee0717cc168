"""Pages only render: their data comes from the same REST API the automation users have."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from automl_site.jobs import selectors
from search_spaces import registry


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/job_list.html", {"kinds": registry.KINDS.values()})


@login_required
def job_submit(request: HttpRequest) -> HttpResponse:
    kind = request.GET.get("kind") or next(iter(registry.KINDS))
    return render(
        request,
        "frontend/job_submit.html",
        {"kinds": registry.KINDS.values(), "kind": kind, "parent": request.GET.get("parent", "")},
    )


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(selectors.job_list(user=request.user), pk=job_id)
    return render(request, "frontend/job_detail.html", {"job": job})


@login_required
def job_compare(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/job_compare.html", {"jobs": request.GET.get("jobs", "")})


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/dataset_list.html")


@require_GET
def plotly_js(request: HttpRequest) -> FileResponse:
    """plotly.js as shipped inside the ``plotly`` Python package: charts work with no internet. Kept by browsers a
    day; a year and ``immutable`` when asked for by its version, as the pages do (``frontend_tags.plotly_src``), so
    an upgrade of ``plotly`` changes the address instead of leaving browsers with the old file for a day."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    response = FileResponse(open(path, "rb"), content_type="application/javascript")
    if request.GET.get("v") == plotly.__version__:
        patch_cache_control(response, public=True, max_age=365 * 86400, immutable=True)
    else:
        patch_cache_control(response, public=True, max_age=86400)
    return response
