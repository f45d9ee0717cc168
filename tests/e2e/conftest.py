"""Session-wide real stacks: PostgreSQL + Redis (the production shape) and the embedded default."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack, scratch_pg_stack

# Its own Redis database; AUTOML_TEST_REDIS_URL names another, so two e2e runs on one machine can go at once
# (sharing one, each flushes the other's queue and their workers take each other's messages).
REDIS_URL = os.environ.get("AUTOML_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")

USERS = {"alice": "alice-pass-1", "bob": "bob-pass-1", "staff": "staff-pass-1"}


@pytest.fixture(scope="session")
def pg_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with scratch_pg_stack(tmp_path_factory.mktemp("pg-stack"), REDIS_URL) as stack:
        for username, password in USERS.items():
            stack.create_user(username, password, staff=username == "staff")
        stack.start_web()
        stack.start_worker("worker")
        stack.start_maintenance()
        yield stack


@pytest.fixture
def stack(pg_stack: Stack) -> Stack:
    """The PostgreSQL + Redis stack with at least one worker running (a test may have killed it)."""
    if not any(n.startswith("worker") for n in pg_stack.procs):
        pg_stack.start_worker("worker")
    return pg_stack


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    var: Path = tmp_path_factory.mktemp("embedded")
    stack = Stack(var, {})  # no DATABASE_URL, no CELERY_BROKER_URL: the defaults
    try:
        stack.manage("migrate", "--noinput")
        stack.create_user("alice", USERS["alice"])
        stack.start_web()
        stack.start_worker("worker")
        stack.start_maintenance()
        yield stack
    finally:
        stack.stop()
