"""Settings for the in-process tests: the machine's real PostgreSQL and Redis unless overridden."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("AUTOML_VAR_DIR", tempfile.mkdtemp(prefix="automl-tests-"))

from automl_site.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
