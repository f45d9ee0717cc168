"""gunicorn settings; every value can be overridden from the environment."""

import multiprocessing
import os

# The asyncio worker (gunicorn's own ASGI server) reads every request's headers and body without tying up a
# thread: a client that sends a header line a second (slowloris) holds a coroutine, so 40 of them cannot stop
# /healthz, as they stopped the 4 threads of each sync/gthread worker. Django runs each request's view in a
# thread of its own; WEB_WORKER_CLASS=gthread with the WSGI app is the fallback.
worker_class = os.environ.get("WEB_WORKER_CLASS", "asgi")
wsgi_app = "automl_site.asgi:application" if worker_class == "asgi" else "automl_site.wsgi:application"
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
if worker_class == "asgi":
    # Each request's thread is new under ASGI: a connection kept past the request would be left in it (Django's
    # advice for ASGI: no persistent connections), so the web takes its PostgreSQL connections from a pool per
    # process (settings.DATABASE_POOL_SIZE); workers and the maintenance loop keep theirs. SQLite ignores both.
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
    os.environ.setdefault("DATABASE_POOL_SIZE", "4")

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", min(4, multiprocessing.cpu_count() + 1)))
threads = int(os.environ.get("WEB_THREADS", "4")) if worker_class == "gthread" else 1
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
# Keep-alive is off by default: every answer says "Connection: close", as gunicorn's sync worker always did. The
# asgi worker of gunicorn 27 now and then closes a kept-alive connection without saying so; a request the client
# sends on it at once (a POST right after a GET) is lost without an answer, and a client cannot resend a POST.
# CI's load test met it twice in a minute of 50 clients, with keep-alive at 2 s and at 5 s. Behind a reverse proxy
# (the production layout) the proxy keeps the browser's connection; set WEB_KEEPALIVE (seconds) to turn it on here.
keepalive = int(os.environ.get("WEB_KEEPALIVE", "0"))
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None  # empty: no access log
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
