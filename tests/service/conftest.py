from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient


@pytest.fixture
def alice(db):  # noqa: ANN001, ANN201
    return get_user_model().objects.create_user("alice", password="alice-pass-1")


@pytest.fixture
def bob(db):  # noqa: ANN001, ANN201
    return get_user_model().objects.create_user("bob", password="bob-pass-1")


@pytest.fixture
def staff(db):  # noqa: ANN001, ANN201
    return get_user_model().objects.create_superuser("staff", password="staff-pass-1")


def client_for(user) -> APIClient:  # noqa: ANN001
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def alice_api(alice) -> APIClient:  # noqa: ANN001
    return client_for(alice)


@pytest.fixture
def bob_api(bob) -> APIClient:  # noqa: ANN001
    return client_for(bob)
