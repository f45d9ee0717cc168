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
    # Each request's thread is new under ASGI: a connection kept past the request would be left in it, so the
    # web closes them (Django's advice for ASGI); workers and the maintenance loop keep theirs.
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", min(4, multiprocessing.cpu_count() + 1)))
threads = int(os.environ.get("WEB_THREADS", "4")) if worker_class == "gthread" else 1
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
# An idle kept-alive connection is closed after this many seconds. A request that reaches the server as it
# closes one is lost without an answer (the client cannot tell whether a POST ran), and under load the asgi
# worker's event loop runs the close timer late, which widens that window. Clients here poll every 0.5-2 s,
# so gunicorn's 2 s default put the close where the polls land (seen once in CI: 1 lost POST in a minute of
# 50 clients). Behind a proxy, set it above the proxy's own idle timeout.
keepalive = int(os.environ.get("WEB_KEEPALIVE", "5"))
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None  # empty: no access log
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
