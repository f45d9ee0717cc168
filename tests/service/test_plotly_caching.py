"""plotly.js (3.5 MB) is asked for by its version and then kept a year as immutable (a day without the version): an
upgrade of plotly changes the address, and a job page opened again takes the compiled script from the cache."""

from __future__ import annotations

import re

import plotly
from django.test import Client

from automl_site.jobs.models import Job


def test_the_job_page_asks_for_plotly_by_version_and_that_answer_is_kept(alice) -> None:  # noqa: ANN001
    job = Job.objects.create(owner=alice, kind="mlp_sweep")
    client = Client()
    client.force_login(alice)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    src = re.search(r'<script src="([^"]+)" id="plotly-js" async>', page).group(1)
    assert src == f"/vendor/plotly.min.js?v={plotly.__version__}"
    assert f'data-job-kind="{job.kind}"' in page  # the curves ask for their first answer before the job comes back
    kept = client.get(src)
    assert kept.status_code == 200
    assert set(kept["Cache-Control"].split(", ")) == {"public", "max-age=31536000", "immutable"}
    assert b"".join(kept.streaming_content)[:200].strip()
    # An address without the version (or with another) may be any release: kept a day, not for good.
    other = client.get("/vendor/plotly.min.js?v=0.0")["Cache-Control"]
    assert set(other.split(", ")) == {"public", "max-age=86400"}
