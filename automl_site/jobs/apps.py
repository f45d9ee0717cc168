from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "automl_site.jobs"
    label = "jobs"
    verbose_name = "AutoML jobs"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from automl_site.jobs import auth
        from automl_site.jobs.services import dataset_sync_builtins

        auth.connect_signals()  # failed logins are counted, a password change ends the user's tokens

        # Built-in datasets are rows so jobs can point at them; they are (re)synced after each migrate,
        # the way Django itself creates content types and permissions.
        post_migrate.connect(lambda **kw: dataset_sync_builtins(), sender=self, weak=False)
