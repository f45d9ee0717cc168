"""Who may ask for a token, and for how long it works.

* Failed logins are counted per account and per client address (the ``user_login_failed`` signal fires for the
  API's token endpoint and the browser's login page alike); past ``AUTOML_LOGIN_FAILURES`` both answer 429 with
  ``Retry-After`` until the window has moved on. Successful logins are not counted, so scripts that log in
  often are not slowed down.
* A token expires ``AUTOML_TOKEN_TTL_SECONDS`` after it was issued (asking again gives a new one), is deleted
  when its user's password changes, and can be revoked by its holder (``DELETE /api/v1/auth/token/``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.db.models.signals import pre_save
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle, UserRateThrottle

from automl_site.jobs.authentication import token_expired

# --- failed logins ------------------------------------------------------------------------------------------

log = logging.getLogger(__name__)


def _failure_limit() -> tuple[int, int]:
    count, seconds = SimpleRateThrottle.parse_rate(None, settings.AUTOML["LOGIN_FAILURES"])  # type: ignore[arg-type]
    return int(count), int(seconds)


def _client_address(request: Any) -> str:
    meta = getattr(request, "META", {}) or {}
    return str(meta.get("REMOTE_ADDR") or "unknown")


def _failure_keys(request: Any, username: str | None) -> list[str]:
    keys = [f"login-failures:ip:{_client_address(request)}"]
    if username:
        keys.append(f"login-failures:user:{str(username).lower()[:150]}")
    return keys


def _recent(key: str, now: float, window: int) -> list[float]:
    try:
        stamps = cache.get(key, [])
    except Exception:  # the counting cache (the broker's Redis) is away: count nothing rather than refuse logins
        log.warning("login-failure counter unreadable; not throttling", exc_info=True)
        return []
    return [t for t in stamps if t > now - window]


def login_retry_after(request: Any, username: str | None) -> float | None:
    """Seconds until a login for ``username`` from this client may be tried again, or ``None`` if it may now."""
    limit, window = _failure_limit()
    now = time.time()
    waits = []
    for key in _failure_keys(request, username):
        recent = _recent(key, now, window)
        if len(recent) >= limit:
            waits.append(recent[-limit] + window - now)
    return max(waits) if waits else None


def _record_failure(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    _, window = _failure_limit()
    now = time.time()
    for key in _failure_keys(request, credentials.get("username")):
        try:
            cache.set(key, [*_recent(key, now, window), now][-1000:], timeout=window)
        except Exception:  # as in _recent: an unreachable cache must not turn a failed login into a 500
            log.warning("login-failure counter unwritable", exc_info=True)


user_login_failed.connect(_record_failure, dispatch_uid="automl-login-failures")


class LoginFailureThrottle(BaseThrottle):
    """DRF's face of the failure count: refuses (429, ``Retry-After``) while the account or address is over."""

    def allow_request(self, request: Request, view: Any) -> bool:
        username = request.data.get("username") if hasattr(request.data, "get") else None
        self._wait = login_retry_after(request, username if isinstance(username, str) else None)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


class LoginView(auth_views.LoginView):
    """The browser's login page, with the same failure count as the token endpoint."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = login_retry_after(request, request.POST.get("username"))
        if wait is not None:
            response = HttpResponse("Too many failed logins; try again later.", status=429, content_type="text/plain")
            response["Retry-After"] = str(int(wait) + 1)
            return response
        return super().post(request, *args, **kwargs)


class UploadRateThrottle(UserRateThrottle):
    """Uploads (datasets, models, synthesis reports) per user: ``AUTOML_UPLOAD_RATE``."""

    scope = "uploads"

    def get_rate(self) -> str:
        return settings.AUTOML["UPLOAD_RATE"]

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # the counting cache is away: the storage quota still bounds what a user can upload
            log.warning("upload rate counter unreachable; not throttling", exc_info=True)
            return True


# --- tokens -------------------------------------------------------------------------------------------------


def _drop_tokens_on_password_change(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """A changed password ends every token of the user (whoever had one must log in again, as sessions must)."""
    if raw or instance.pk is None:
        return
    old = type(instance).objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password:
        Token.objects.filter(user_id=instance.pk).delete()


def connect_signals() -> None:
    from django.contrib.auth import get_user_model

    pre_save.connect(_drop_tokens_on_password_change, sender=get_user_model(), dispatch_uid="automl-token-rotation")


TokenReply = inline_serializer("TokenReply", {"token": serializers.CharField()})


class TokenView(ObtainAuthToken):
    """``POST``: a token for ``{username, password}`` (the current one, or a new one if it expired); failed
    attempts are counted and answered 429 past the limit. ``DELETE``: revoke the token you authenticate with."""

    throttle_classes = [LoginFailureThrottle]

    def get_permissions(self) -> list[Any]:
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    def get_throttles(self) -> list[BaseThrottle]:
        return [] if self.request.method == "DELETE" else super().get_throttles()

    @extend_schema(request=AuthTokenSerializer, responses={200: TokenReply}, operation_id="auth_token_create")
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token = Token.objects.filter(user=user).first()
        if token is not None and token_expired(token):
            token.delete()
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})

    @extend_schema(request=None, responses={204: None}, operation_id="auth_token_revoke")
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
