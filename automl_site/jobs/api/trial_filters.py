"""The trial list's filter and ordering (``GET /api/v1/jobs/{id}/trials/?state=&ordering=``): the job page's trial
table sorts and pages on the server, so a job with thousands of trials sends one page, not all of them."""

from __future__ import annotations

import re
from typing import Any

import django_filters
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.expressions import OrderBy
from django.db.models.fields.json import KeyTransform
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from automl_site.jobs.models import Trial
from search_spaces.base import TRIAL_STATES

PLAIN_KEYS = ("number", "state", "duration_seconds", "started_at", "finished_at", "attempt")
# values.N: the N-th objective value; metrics.NAME: a metric the trials report (no "__": that is a lookup path).
JSON_KEY = re.compile(r"^(values)\.([0-9]{1,3})$|^(metrics)\.((?!.*__)[A-Za-z0-9_\-]{1,100})$")
ORDERING_HELP = (
    "comma-separated keys, '-' before one for descending: "
    + ", ".join(PLAIN_KEYS)
    + ", values.N (the N-th objective value, from 0) or metrics.NAME (a metric the trials report); trials without "
    "the value come last either way, ties go by number"
)


class TrialFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=[(s, s) for s in TRIAL_STATES])

    class Meta:
        model = Trial
        fields = ["state"]


def _order_terms(term: str) -> list[OrderBy]:
    descending, key = term.startswith("-"), term.lstrip("-")
    if key in PLAIN_KEYS:
        value: Any = F(key)
        lookup = None
    elif match := JSON_KEY.match(key):
        field, name = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        value, lookup = KeyTransform(name, field), f"{field}__{name}"
    else:
        raise ValidationError({"ordering": [f"cannot order by {key!r}; {ORDERING_HELP}"]})
    terms = []
    if lookup is not None:  # a missing key and a JSON null both sort after every value
        missing = Case(When(Q(**{f"{lookup}__isnull": True}) | Q(**{lookup: None}), then=Value(1)), default=Value(0))
        terms.append(missing.asc())
    terms.append(value.desc(nulls_last=True) if descending else value.asc(nulls_last=True))
    return terms


def trials_filtered(request: Request, trials: QuerySet[Trial]) -> QuerySet[Trial]:
    """``trials`` with the request's ``state`` filter and ``ordering`` applied (400 for a value neither takes)."""
    filterset = TrialFilter(request.query_params, queryset=trials)
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    trials = filterset.qs
    ordering = request.query_params.get("ordering", "").strip()
    if not ordering:
        return trials
    terms = [t for term in ordering.split(",")[:4] if term.strip() for t in _order_terms(term.strip())]
    return trials.order_by(*terms, "number")


PARAMETERS = [
    OpenApiParameter(
        "state", str, many=True, enum=list(TRIAL_STATES), description="only trials in these states (repeat it)"
    ),
    OpenApiParameter("ordering", str, description=ORDERING_HELP),
]
