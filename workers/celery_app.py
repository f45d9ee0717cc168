"""The Celery application: settings come from Django's settings under the CELERY_ namespace."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "automl_site.settings")

# CPU threads each job's PyTorch/OpenMP code may use, set before anything imports torch. The kit's models are
# small: on a 2-core machine one intra-op thread per job was faster than two when we measured it (thread
# start-up and contention with the other worker process outweigh the parallel speed-up), so the default is 1;
# on a big host with few worker processes and large models, raise AUTOML_TORCH_THREADS to cores ÷ concurrency.
# An OMP_NUM_THREADS / MKL_NUM_THREADS the operator set wins.
_threads = os.environ.get("AUTOML_TORCH_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _threads)

app = Celery("automl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
