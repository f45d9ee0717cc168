"""The Celery worker's application: the service's own (``automl_site.jobs.queue``) with this package's tasks."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "automl_site.settings")

# CPU threads each job's PyTorch/OpenMP code may use, set before anything imports torch. The kit's models are
# small: on a 2-core machine one intra-op thread per job was faster than two when we measured it (thread
# start-up and contention with the other worker process outweigh the parallel speed-up), so the default is 1;
# on a big host with few worker processes and large models, raise AUTOML_TORCH_THREADS to cores ÷ concurrency.
# An OMP_NUM_THREADS / MKL_NUM_THREADS the operator set wins.
_threads = os.environ.get("AUTOML_TORCH_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _threads)

from automl_site.jobs.queue import celery_app  # noqa: E402 - after the thread settings above

app = celery_app()
app.set_current()
app.set_default()
app.autodiscover_tasks(["workers"])
