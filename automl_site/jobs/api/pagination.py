from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """Page-number pagination; clients may ask for up to 1,000 rows with ``?page_size=``."""

    page_size_query_param = "page_size"
    max_page_size = 1000


class TrialPagination(Pagination):
    """The trial list's pages: at most 500 trials a page (a job can have 100,000; the table shows up to 100)."""

    max_page_size = 500
