"""What every job kind stores: jobs, trials, metric points, artifacts, FPGA reports, datasets, models."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Stopped on its owner's request with its checkpoint and trials kept; resuming queues it again. Neither
    # active (it holds no worker and no place in the active-job limit) nor final.
    PAUSED = "paused"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Dataset(models.Model):
    """A built-in dataset (no owner, ``builtin`` set) or a user's upload (owner and file set)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=200)
    builtin = models.CharField(max_length=64, blank=True, default="", help_text="built-in dataset key")
    description = models.TextField(blank=True, default="")
    file = models.FileField(upload_to="datasets/%Y/%m/", blank=True)
    modality = models.CharField(max_length=16)
    input_shape = models.JSONField(default=list)
    num_classes = models.PositiveIntegerField()
    num_samples = models.PositiveIntegerField(null=True, blank=True)
    class_counts = models.JSONField(default=list, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["builtin", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["builtin"], condition=~models.Q(builtin=""), name="unique_builtin_dataset"),
        ]

    def __str__(self) -> str:
        return self.name


class ModelFile(models.Model):
    """An uploaded model: a ``state_dict`` for a built-in architecture, never an arbitrary pickle."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_files")
    name = models.CharField(max_length=200)
    architecture = models.JSONField(help_text="built-in architecture config (name, input_shape, ...)")
    file = models.FileField(upload_to="models/%Y/%m/")
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    params = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Job(models.Model):
    # db_index=False on a foreign key: an index of Meta.indexes (or a unique constraint) starts with the column.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    kind = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True, default="")
    config = models.JSONField(default=dict)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    model = models.ForeignKey(ModelFile, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    budget = models.FloatField(default=0.0, help_text="estimated CPU-minutes")
    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker_host = models.CharField(max_length=200, blank=True, default="")
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # Set when the worker running the job shuts down gracefully: the job stops at its next check and
    # goes back to the queue, to resume from its checkpoint on another worker.
    requeue_requested = models.BooleanField(default=False)
    # Set by a pause of a running job: it stops at its next heartbeat and becomes ``paused``.
    pause_requested = models.BooleanField(default=False)
    # Runs that ended on request (paused, or handed back by a worker shutting down) rather than with a lost
    # worker: the reaper's ``MAX_ATTEMPTS`` bounds ``attempts - stopped_runs``, the runs that were lost.
    stopped_runs = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at", "-id"]),  # the job list, in its ordering
            models.Index(fields=["owner", "kind", "status"]),
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "enqueued_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.name}".strip()


class Trial(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="trials", db_index=False)
    number = models.PositiveIntegerField()
    params = models.JSONField(default=dict)
    values = models.JSONField(null=True, blank=True)
    metrics = models.JSONField(default=dict)
    state = models.CharField(max_length=16, default="complete")
    attempt = models.PositiveIntegerField(default=1, help_text="which run of the job (claim) produced it")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        # job_id, not job: ordering by the relation joined jobs and sorted by Job's created_at; this is the unique
        # (job, number) index's order
        ordering = ["job_id", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="unique_trial_number")]

    def __str__(self) -> str:
        return f"trial {self.number} of job {self.job_id}"


class MetricPoint(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metric_points", db_index=False)
    trial_number = models.PositiveIntegerField(null=True, blank=True)
    step = models.IntegerField()
    name = models.CharField(max_length=100)
    value = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "id"]  # the (job, id) index's order; "job" joined jobs to sort by their created_at
        indexes = [
            models.Index(fields=["job", "id"]),  # ?since= polling
            # the first drawing's seeks: a job's metric names, a name's latest trials, a series in step order
            models.Index(fields=["job", "name", "trial_number", "step"]),
        ]


class Artifact(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts", db_index=False)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32)
    file = models.FileField(upload_to="artifacts/", max_length=500)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="unique_artifact_name")]

    def __str__(self) -> str:
        return self.name


class FpgaReport(models.Model):
    class Source(models.TextChoices):
        ESTIMATE = "estimate"
        VIVADO_HLS = "vivado_hls"
        VITIS_HLS = "vitis_hls"
        VIVADO_SYNTH = "vivado_synth"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="fpga_reports", db_index=False)
    trial = models.ForeignKey(Trial, null=True, blank=True, on_delete=models.CASCADE, related_name="fpga_reports")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ESTIMATE)
    part = models.CharField(max_length=64)
    clock_period_ns = models.FloatField()
    reuse_factor = models.JSONField(default=dict, help_text="applied reuse factor per layer")
    precision = models.JSONField(default=dict, help_text="applied precision per layer")
    strategy = models.CharField(max_length=16, blank=True, default="")
    io_type = models.CharField(max_length=16, blank=True, default="")
    dsp = models.IntegerField(null=True, blank=True)
    lut = models.IntegerField(null=True, blank=True)
    ff = models.IntegerField(null=True, blank=True)
    bram = models.FloatField(null=True, blank=True)
    latency_cycles = models.IntegerField(null=True, blank=True)
    latency_ns = models.FloatField(null=True, blank=True)
    initiation_interval = models.IntegerField(null=True, blank=True)
    utilisation = models.JSONField(default=dict, help_text="percent of the part per resource")
    fixed_point_accuracy = models.FloatField(null=True, blank=True)
    float_accuracy = models.FloatField(null=True, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "id"]
        # a job's reports in order; a job has at most a few thousand, so ?source= filters them without its own index
        indexes = [models.Index(fields=["job", "id"])]


class JobCheckpoint(models.Model):
    """The latest resume state of a job, in the database so any worker host can resume it."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="checkpoint", primary_key=True)
    state = models.BinaryField()
    updated_at = models.DateTimeField(auto_now=True)
