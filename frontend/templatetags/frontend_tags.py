"""Template tags of the pages."""

from __future__ import annotations

import functools

from django import template
from django.urls import reverse

register = template.Library()


@functools.cache
def plotly_version() -> str:
    import plotly

    return str(plotly.__version__)


@register.simple_tag
def plotly_src() -> str:
    """plotly.js's address with the version of the ``plotly`` package that ships it: the file is served to be kept
    (a year, immutable), and an upgrade changes the address instead of leaving browsers with the old file."""
    return f"{reverse('plotly-js')}?v={plotly_version()}"
