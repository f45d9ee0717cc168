"""API token authentication with an expiry (the REST framework's setting names this module, so it imports no
views: see automl_site/jobs/auth.py for the rest of the token rules)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token


def token_expired(token: Token) -> bool:
    ttl = settings.AUTOML["TOKEN_TTL_SECONDS"]
    return bool(ttl) and token.created < timezone.now() - dt.timedelta(seconds=ttl)


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication; a token older than ``AUTOML_TOKEN_TTL_SECONDS`` no longer works."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise exceptions.AuthenticationFailed("token expired; ask POST /api/v1/auth/token/ for a new one")
        return user, token
