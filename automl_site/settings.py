"""Settings: every deployment knob is an environment variable (see .env.example).

The defaults give the embedded single-machine setup: SQLite for the database and Kombu's SQLAlchemy
transport over another SQLite file for the broker, so a fresh machine needs no server.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from automl_site.typed_env import TypedEnv, invalid

BASE_DIR = Path(__file__).resolve().parent.parent

# Every knob goes through this reader: a value it cannot use stops start-up with ImproperlyConfigured.
env = TypedEnv()
TypedEnv.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("AUTOML_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    # No secret in the repository: a single machine keeps a generated one under var/.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        from django.core.management.utils import get_random_secret_key

        # 0600 from the first byte: O_EXCL|O_CREAT with the mode, so no other user can read it in between.
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(get_random_secret_key())
    SECRET_KEY = key_file.read_text().strip()
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):  # Django would only say so in `manage.py check`
        raise invalid("DJANGO_CSRF_TRUSTED_ORIGINS", _origin, "origins with a scheme, e.g. https://automl.example.org")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "automl_site.jobs",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "automl_site.streaming.AsyncFileStreamMiddleware",  # outside WhiteNoise: it streams its files too
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "automl_site.urls"
WSGI_APPLICATION = "automl_site.wsgi.application"
ASGI_APPLICATION = "automl_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; IMMEDIATE takes the write lock up front
    # so concurrent writers wait for `timeout` instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif env.int("DATABASE_POOL_SIZE", default=0, ge=0):
    # A pool of connections per process (psycopg's, through Django 5.1+), for the ASGI web (deploy/gunicorn.conf.py):
    # there each request's thread is new, so a kept connection would stay behind in it, and without a pool every
    # request opened its own PostgreSQL connection.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_SIZE", default=0, ge=0),
        "timeout": 30,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60, ge=0))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing one
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
# Work directories of running jobs (scratch; artifacts are copied into MEDIA_ROOT when complete).
AUTOML_WORK_DIR = Path(env.str("AUTOML_WORK_DIR", default=str(VAR_DIR / "work")))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "automl_site.jobs.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "automl_site.jobs.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "automl_site.jobs.api.pagination.Pagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50, ge=1),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "automl_site.jobs.api.schema.AutoSchema",  # error responses documented too
    "EXCEPTION_HANDLER": "automl_site.jobs.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AutoML job service API",
    "DESCRIPTION": "Submit neural-architecture search and compression jobs, watch them, fetch results.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery (namespace CELERY_) -------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=f"sqla+sqlite:///{VAR_DIR / 'broker.sqlite3'}")
_BROKER_SCHEMES = {"redis", "rediss", "sqla+sqlite", "sqla+postgresql", "amqp", "memory", "filesystem"}
if CELERY_BROKER_URL.split(":", 1)[0] not in _BROKER_SCHEMES:
    raise ImproperlyConfigured(f"CELERY_BROKER_URL has an unsupported scheme: {CELERY_BROKER_URL!r}")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# The database is the source of truth; results are not needed (a backend is set only for benchmarks).
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=1, ge=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
if CELERY_BROKER_URL.startswith("redis"):
    # acks_late messages of a worker that vanished come back after this; the reaper is faster.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600, ge=1)}

# --- The job service ------------------------------------------------------------------------------
AUTOML = {
    "HOSTNAME": env.str("AUTOML_HOSTNAME", default=socket.gethostname()),
    # A running job's worker writes a heartbeat this often; a job whose heartbeat is older than
    # STALE_AFTER is considered orphaned by the reaper.
    "HEARTBEAT_SECONDS": env.float("AUTOML_HEARTBEAT_SECONDS", default=2.0, gt=0),
    "STALE_AFTER_SECONDS": env.float("AUTOML_STALE_AFTER_SECONDS", default=30.0, gt=0),
    # How often the maintenance loop (reaper + reconciler) runs, and after how long a queued job whose
    # message the broker may have lost is enqueued again (duplicates are harmless: atomic claim).
    "MAINTENANCE_SECONDS": env.float("AUTOML_MAINTENANCE_SECONDS", default=10.0, gt=0),
    "REQUEUE_AFTER_SECONDS": env.float("AUTOML_REQUEUE_AFTER_SECONDS", default=60.0, gt=0),
    "MAX_ATTEMPTS": env.int("AUTOML_MAX_ATTEMPTS", default=3, ge=1),
    # Hard/soft time limit of one job run, seconds.
    "TIME_LIMIT_SECONDS": env.int("AUTOML_TIME_LIMIT_SECONDS", default=6 * 3600, ge=1),
    # Per-user limits enforced at submit.
    "MAX_ACTIVE_JOBS_PER_USER": env.int("AUTOML_MAX_ACTIVE_JOBS_PER_USER", default=10, ge=1),
    "MAX_BUDGET_PER_JOB": env.float("AUTOML_MAX_BUDGET_PER_JOB", default=240.0, gt=0),  # CPU-minutes
    "MAX_UPLOAD_BYTES": env.int("AUTOML_MAX_UPLOAD_BYTES", default=200 * 1024 * 1024, ge=1),
    # What an upload may declare, checked before it is read or built: a dataset's arrays in memory and its
    # numbers per sample; a model's parameters and its activations per sample (a few numbers in an
    # architecture can otherwise ask the web process for gigabytes).
    "MAX_DATASET_BYTES": env.int("AUTOML_MAX_DATASET_BYTES", default=200 * 1024 * 1024, ge=1),
    "MAX_DATASET_FEATURES": env.int("AUTOML_MAX_DATASET_FEATURES", default=65_536, ge=1),
    "MAX_MODEL_PARAMS": env.int("AUTOML_MAX_MODEL_PARAMS", default=20_000_000, ge=1),
    "MAX_MODEL_ACTIVATIONS": env.int("AUTOML_MAX_MODEL_ACTIVATIONS", default=20_000_000, ge=1),
    # Bytes one user may keep: uploaded datasets and models plus their jobs' artifacts.
    "STORAGE_QUOTA_BYTES": env.int("AUTOML_STORAGE_QUOTA_BYTES", default=5 * 1024**3, ge=0),
    # A finished job's checkpoint (database row and checkpoint artifacts) is deleted this long after it ended;
    # 0: at the next maintenance run. A failed or cancelled job can no longer resume after that.
    "CHECKPOINT_RETENTION_SECONDS": env.float("AUTOML_CHECKPOINT_RETENTION_SECONDS", default=7 * 86400, ge=0),
    # workers/celery_app.py hands this to OpenMP before Django loads; reading it here stops a worker with a bad
    # value at start-up.
    "TORCH_THREADS": env.int("AUTOML_TORCH_THREADS", default=1, ge=1),
    # API tokens expire this long after they are issued (0: never); failed logins per account and per client
    # address, and uploads per user, before a 429 (automl_site/jobs/auth.py).
    "TOKEN_TTL_SECONDS": env.int("AUTOML_TOKEN_TTL_SECONDS", default=30 * 86400, ge=0),
    "LOGIN_FAILURES": env.str("AUTOML_LOGIN_FAILURES", default="10/minute"),
    "UPLOAD_RATE": env.str("AUTOML_UPLOAD_RATE", default="60/hour"),
}
for _knob in ("LOGIN_FAILURES", "UPLOAD_RATE"):
    if not re.fullmatch(r"[1-9][0-9]*/(second|minute|hour|day)", AUTOML[_knob]):
        raise invalid(f"AUTOML_{_knob}", AUTOML[_knob], "a rate: N/second, N/minute, N/hour or N/day")

# Throttles count here; every web process must share it, so a Redis broker's server is the default.
if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache_url("CACHE_URL")}
elif CELERY_BROKER_URL.startswith("redis"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CELERY_BROKER_URL,
            "KEY_PREFIX": "automl-cache",
        }
    }
if AUTOML["STALE_AFTER_SECONDS"] <= 2 * AUTOML["HEARTBEAT_SECONDS"]:
    raise invalid(
        "AUTOML_STALE_AFTER_SECONDS",
        AUTOML["STALE_AFTER_SECONDS"],
        f"more than twice AUTOML_HEARTBEAT_SECONDS ({AUTOML['HEARTBEAT_SECONDS']:g})",
    )
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- TLS (off for the embedded default on 127.0.0.1; `manage.py check --deploy` is clean with it on) --------
# DJANGO_HTTPS=true: the site is served over HTTPS (by a proxy in front, or gunicorn's own certificate). Each
# knob below follows it unless set on its own.
HTTPS = env.bool("DJANGO_HTTPS", default=False)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # a load balancer's plain-HTTP probe
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 86400 if HTTPS else 0, ge=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=HTTPS)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=HTTPS)
# Behind a proxy that terminates TLS: trust its X-Forwarded-Proto (only if it always sets or strips it).
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
