"""Settings for the in-process tests: the machine's real PostgreSQL and Redis unless overridden."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("AUTOML_VAR_DIR", tempfile.mkdtemp(prefix="automl-tests-"))

from automl_site.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# Throttle counts in this process only: a Redis cache would carry them from one test (and run) to the next.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

if DATABASES["default"]["ENGINE"].endswith("postgresql"):  # noqa: F405
    # One test database per checkout, so two checkouts on one machine can run their suites at once;
    # AUTOML_TEST_DB_TAG gives two runs in one checkout a database each.
    import hashlib
    from pathlib import Path

    _tag = (
        os.environ.get("AUTOML_TEST_DB_TAG")
        or hashlib.sha1(str(Path(__file__).resolve().parent).encode()).hexdigest()[:8]
    )
    DATABASES["default"]["TEST"] = {"NAME": f"test_automl_{_tag}"}  # noqa: F405
