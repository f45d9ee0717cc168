"""First start of a single machine: an admin account (credentials written to a private file) and,
with ``--demo``, two small jobs so there is something to look at."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from automl_site.jobs.models import Job
from automl_site.jobs.services import job_submit


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a new file that is 0600 from its creation (not chmod-ed after, when another user could
    already have opened it); an old file is replaced by a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class Command(BaseCommand):
    help = "Create the admin account if missing (password in var/admin-credentials.txt); --demo queues two jobs."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--username", default="admin")
        parser.add_argument("--demo", action="store_true", help="queue small demo jobs if there are none")

    def handle(self, *args, username: str, demo: bool, **options) -> None:  # noqa: ANN002, ANN003
        users = get_user_model()
        cred_file = settings.VAR_DIR / "admin-credentials.txt"
        user = users.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = users.objects.create_superuser(username=username, email="", password=password)
            write_secret(cred_file, f"username: {username}\npassword: {password}\n")
            self.stdout.write(f"created admin account {username!r}")
        if cred_file.exists():
            # The path only: a terminal's scrollback, a CI log or `make run | tee` must not hold the password.
            self.stdout.write(f"admin credentials are in {cred_file} (readable by this user only)")
        else:
            self.stdout.write(f"admin account {username!r} exists (its password was set before)")
        if demo and not Job.objects.exists():
            job = job_submit(
                owner=user, kind="mlp_sweep", name="demo: MLP sweep on digits", config={"trials": 12, "epochs": 30}
            )
            self.stdout.write(f"queued demo job #{job.pk}")
            # About a minute on two cores: FPGA reports, estimates vs reuse factor, interactive plots.
            job = job_submit(
                owner=user,
                kind="hls4ml_sweep",
                name="demo: hls4ml sweep of the jet tagger",
                config={"n_trials": 12, "epochs": 10},
            )
            self.stdout.write(f"queued demo job #{job.pk}")
        port = os.environ.get("PORT", "8000")
        self.stdout.write(f"open http://127.0.0.1:{port}/ (API docs at /api/docs/, admin at /admin/)")
