"""Logins are throttled, tokens expire, rotate with the password and can be revoked; uploads are rate-limited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests import hostile

pytestmark = pytest.mark.django_db
TOKEN_URL = "/api/v1/auth/token/"


@pytest.fixture(autouse=True)
def _fresh_counts():  # noqa: ANN202
    cache.clear()
    yield
    cache.clear()


def _token(username: str, password: str, client: APIClient | None = None):  # noqa: ANN202
    return (client or APIClient()).post(TOKEN_URL, {"username": username, "password": password}, format="json")


def test_sixty_wrong_passwords_meet_a_429_with_retry_after(alice) -> None:  # noqa: ANN001
    codes = [_token("alice", f"wrong-{i}").status_code for i in range(60)]
    assert codes[:10] == [400] * 10 and set(codes[10:]) == {429}
    r = _token("alice", "alice-pass-1")
    assert r.status_code == 429 and 0 < int(r["Retry-After"]) <= 60  # even the right one, until the window moves
    # another account from another address is not held up by this one's attacker
    other = APIClient(REMOTE_ADDR="10.0.0.2")
    assert _token("bob-nobody", "x", other).status_code == 400


def test_many_good_logins_are_not_throttled(alice) -> None:  # noqa: ANN001
    assert {_token("alice", "alice-pass-1").status_code for _ in range(30)} == {200}


def test_the_browser_login_page_counts_the_same_failures(alice) -> None:  # noqa: ANN001
    browser = Client()
    codes = [browser.post("/login/", {"username": "alice", "password": "nope"}).status_code for _ in range(12)]
    assert codes[:10] == [200] * 10 and codes[10:] == [429, 429]
    assert _token("alice", "alice-pass-1").status_code == 429


def test_a_token_expires_and_a_new_one_is_issued(alice, settings) -> None:  # noqa: ANN001
    settings.AUTOML = {**settings.AUTOML, "TOKEN_TTL_SECONDS": 3600}
    key = _token("alice", "alice-pass-1").json()["token"]
    api = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/jobs/").status_code == 200
    Token.objects.filter(key=key).update(created=Token.objects.get(key=key).created - dt.timedelta(hours=2))
    r = api.get("/api/v1/jobs/")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    fresh = _token("alice", "alice-pass-1").json()["token"]
    assert fresh != key
    assert APIClient(HTTP_AUTHORIZATION=f"Token {fresh}").get("/api/v1/jobs/").status_code == 200


def test_a_password_change_ends_the_token(alice) -> None:  # noqa: ANN001
    key = _token("alice", "alice-pass-1").json()["token"]
    alice.set_password("a-new-password-2")
    alice.save()
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/jobs/").status_code == 401
    assert _token("alice", "a-new-password-2").json()["token"] != key
    alice.first_name = "Alice"  # saving anything else keeps the token
    alice.save()
    assert Token.objects.filter(user=alice).exists()


def test_a_user_revokes_their_token(alice, bob) -> None:  # noqa: ANN001
    key = _token("alice", "alice-pass-1").json()["token"]
    bob_key = _token("bob", "bob-pass-1").json()["token"]
    api = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.delete(TOKEN_URL).status_code == 204
    assert api.get("/api/v1/jobs/").status_code == 401
    assert APIClient(HTTP_AUTHORIZATION=f"Token {bob_key}").get("/api/v1/jobs/").status_code == 200
    assert APIClient().delete(TOKEN_URL).status_code == 401


def test_the_revoke_endpoint_is_in_the_schema(alice_api) -> None:  # noqa: ANN001
    paths = alice_api.get("/api/schema/?format=json").json()["paths"]
    assert {"post", "delete"} <= set(paths[TOKEN_URL])


def test_uploads_are_rate_limited_per_user(alice_api, bob_api, settings, tmp_path) -> None:  # noqa: ANN001
    settings.MEDIA_ROOT = tmp_path
    settings.AUTOML = {**settings.AUTOML, "UPLOAD_RATE": "5/hour"}
    codes = [
        alice_api.post(
            "/api/v1/datasets/", {"file": SimpleUploadedFile("d.npz", hostile.good_npz())}, format="multipart"
        ).status_code
        for _ in range(8)
    ]
    assert codes == [201] * 5 + [429] * 3
    assert alice_api.post("/api/v1/jobs/", {"kind": "mlp_sweep"}, format="json").status_code == 201  # not an upload
    assert (
        bob_api.post("/api/v1/models/", {"file": SimpleUploadedFile("m.pt", b"x")}, format="multipart").status_code
        == 400
    )


def test_a_storage_quota_is_a_clear_400(alice_api, settings, tmp_path) -> None:  # noqa: ANN001
    settings.MEDIA_ROOT = tmp_path
    data = hostile.good_npz()
    settings.AUTOML = {**settings.AUTOML, "STORAGE_QUOTA_BYTES": len(data) * 2 + 10}
    codes = [
        alice_api.post("/api/v1/datasets/", {"file": SimpleUploadedFile("d.npz", data)}, format="multipart")
        for _ in range(3)
    ]
    assert [r.status_code for r in codes] == [201, 201, 400]
    assert "quota" in codes[2].json()["file"][0]


def test_logins_work_while_the_counting_cache_is_unreachable(alice, settings) -> None:  # noqa: ANN001
    """The throttles count in the broker's Redis; with it away a login is answered (200/400), never a 500."""
    from django.core.cache import caches

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    caches._settings = None  # forget the connection handler's settings: the next lookup builds the dead cache
    try:
        if hasattr(caches._connections, "default"):
            del caches._connections.default
        assert _token("alice", "wrong").status_code == 400
        assert _token("alice", "alice-pass-1").status_code == 200
    finally:
        caches._settings = None
        if hasattr(caches._connections, "default"):
            del caches._connections.default
