"""ASGI entry point: what gunicorn serves in production (deploy/gunicorn.conf.py, its asyncio worker)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "automl_site.settings")
application = get_asgi_application()
