"""The contract between the service and its algorithms.

An algorithm (a *job kind*) is one module in ``search_spaces/`` that subclasses :class:`JobKind` and is
listed in :mod:`search_spaces.registry`. It never imports Django: everything it produces goes through
the :class:`Reporter` it is handed, so the same code runs from a unit test (:class:`MemoryReporter`),
the CLI (``python -m search_spaces``) or a Celery worker (the ORM-backed reporter in ``automl_site``).

Heavy imports (torch, optuna, hls4ml) belong inside :meth:`JobKind.run` or the modules it calls, never
at the top of a kind module: the web process imports every kind module to serve the config schemas.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jsonschema

TRIAL_STATES = ("running", "complete", "pruned", "failed")


def _is_strict_integer(checker: object, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


# JSON Schema calls 2.0 an integer; the algorithms would then get a float where they index, slice or range over
# it (a TypeError in the worker). The contract is stricter: an integer field takes a JSON integer only.
StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


class ConfigError(ValueError):
    """A job config that the kind refuses; ``errors`` maps a field path to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class JobCancelled(Exception):
    """Raised by an algorithm (or :func:`check_stop`) when the reporter asks it to stop."""


@dataclass(frozen=True)
class TrialRecord:
    """A trial the service already stored; handed back on resume so finished work is not redone."""

    number: int
    params: dict[str, Any]
    values: list[float] | None
    metrics: dict[str, Any]
    state: str


@dataclass(frozen=True)
class JobInputs:
    """What a job works on besides its config.

    ``dataset`` is a built-in dataset name (see ``search_spaces.kit.datasets``) or ``None`` for the kind's
    default; ``dataset_path`` is set for an uploaded ``.npz``/CSV file. ``model_path`` points at a model
    artifact (a ``state_dict`` + architecture config, loadable with ``weights_only=True``) from a parent
    job or an upload. ``optuna_storage`` is an RDB URL where kinds that use Optuna keep their study (the
    service's own database), or ``None`` for in-memory. ``study_name`` names that study.
    """

    seed: int = 0
    device: str = "cpu"
    # PyTorch intra-op threads the job may use: the worker's setting (AUTOML_TORCH_THREADS), not the kind's.
    threads: int = 1
    dataset: str | None = None
    dataset_path: Path | None = None
    model_path: Path | None = None
    model_arch: dict[str, Any] | None = None
    optuna_storage: str | None = None
    study_name: str | None = None
    workdir: Path = field(default_factory=lambda: Path("."))


class Reporter(Protocol):
    """How an algorithm tells the world what it did. Every method is cheap and may be called often."""

    def progress(self, fraction: float, message: str = "") -> None:
        """Overall progress in [0, 1] with a short human message ("trial 3/10")."""

    def trial(
        self,
        number: int,
        *,
        params: dict[str, Any],
        state: str = "complete",
        values: list[float] | None = None,
        metrics: dict[str, Any] | None = None,
        started: float | None = None,
        finished: float | None = None,
    ) -> None:
        """Create or update trial ``number`` (an Optuna trial, an episode, a sampled network, an epoch).

        ``state`` is one of :data:`TRIAL_STATES`; ``started``/``finished`` are ``time.time()`` stamps.
        """

    def metric(self, name: str, value: float, step: int, trial: int | None = None) -> None:
        """One point of a live curve."""

    def artifact(self, name: str, path: Path, kind: str) -> None:
        """Store the file at ``path`` (written completely by the caller) as an artifact of this job.

        ``kind`` is a short word: ``model``, ``figure`` (plotly figure JSON, see ``search_spaces.kit.results``),
        ``plot`` (a drawing: SVG, PNG), ``archive``, ``config``, ``checkpoint``, ``data``.
        """

    def fpga_report(self, trial: int | None, fields: dict[str, Any]) -> None:
        """One FPGA resource report (see PRODUCT.md for the fields)."""

    def should_stop(self) -> bool:
        """True once the job is cancelled; check it between batches and stop promptly."""

    def save_checkpoint(self, state: bytes) -> None:
        """Keep ``state`` (opaque bytes, e.g. from ``torch.save`` into a buffer) for a resume."""

    def load_checkpoint(self) -> bytes | None:
        """The last state saved by this job, or ``None`` on a fresh start."""

    def completed_trials(self) -> list[TrialRecord]:
        """Trials already stored as finished (``complete``/``pruned``/``failed``) before a resume."""


def json_safe(value: Any) -> Any:
    """A value as strict JSON can hold it: NaN and infinities become null, NumPy/torch scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if getattr(value, "ndim", 0) > 0 and hasattr(value, "tolist"):  # NumPy arrays, tensors
        return json_safe(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # their scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_stop(reporter: Reporter) -> None:
    """Raise :class:`JobCancelled` if the job should stop."""
    if reporter.should_stop():
        raise JobCancelled()


METRIC_GROUPS = ("accuracy", "loss", "resources", "bytes", "time", "other")


@dataclass(frozen=True)
class MetricSpec:
    """What the metric points a kind reports under ``name`` measure: their ``unit`` (``"fraction"``, ``"×"``,
    ``"ns"``, ...; empty: a plain number) and the axis ``group`` live curves are drawn on (one of
    :data:`METRIC_GROUPS`). ``name`` is a metric name or a glob pattern (``"pretrain/*"``, ``"*/val_acc"``)."""

    name: str
    unit: str = ""
    group: str = "other"
    description: str = ""

    def __post_init__(self) -> None:
        if self.group not in METRIC_GROUPS:
            raise ValueError(f"metric group {self.group!r} is not one of {', '.join(METRIC_GROUPS)}")

    def matches(self, metric: str) -> bool:
        return fnmatch.fnmatchcase(metric, self.name)


@dataclass(frozen=True)
class Objective:
    """What one entry of a trial's ``values`` is: its ``name``, which way the search drives it (``direction``:
    ``"maximize"`` or ``"minimize"``) and its ``unit`` (as :class:`MetricSpec`'s). A job's trial table heads its
    value columns with these and marks the best trial by the first one."""

    name: str
    direction: str = "maximize"
    unit: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"objective direction {self.direction!r} is not 'maximize' or 'minimize'")


@dataclass(frozen=True)
class DataShape:
    """A dataset as a model sees it: its modality (``image``/``tabular``), one sample's shape and its classes."""

    modality: str
    input_shape: tuple[int, ...]
    num_classes: int
    # Samples in the whole dataset (``None``: not known) and a built-in dataset's key (empty for an upload): what
    # a kind's :meth:`JobKind.budget` scales its measured timings by.
    num_samples: int | None = None
    name: str = ""

    @property
    def features(self) -> int:
        """Numbers per sample (features, or C×H×W)."""
        return math.prod(self.input_shape)

    @classmethod
    def of(cls, data: DataShape | str | None, default: str) -> DataShape:
        """``data`` itself, the built-in dataset it names, or (``None``) the built-in ``default``."""
        if isinstance(data, DataShape):
            return data
        return cls.builtin(data or default)

    @classmethod
    def builtin(cls, name: str) -> DataShape:
        """The built-in dataset ``name`` (``search_spaces.kit.datasets``) with its size."""
        from search_spaces.kit.datasets import BUILTIN, BUILTIN_SAMPLES

        info = BUILTIN[name]
        return cls(info.modality, tuple(info.input_shape), info.num_classes, BUILTIN_SAMPLES[name], name)


def scaled_seconds(table: dict[str, float], data: DataShape | None, reference: str) -> float:
    """A kind's measured seconds (per epoch, per episode) on ``data``: ``table``'s own figure for a built-in
    dataset it lists, else the ``reference`` dataset's figure scaled by the numbers an epoch reads (samples ×
    features), so an uploaded 12 × 1,000,000 table is budgeted as the work it is, not as ``reference``."""
    if data is None:
        return table[reference]
    if data.name in table:
        return table[data.name]
    ref = DataShape.builtin(reference)
    samples = data.num_samples or ref.num_samples or 1
    return table[reference] * (samples * data.features) / ((ref.num_samples or 1) * ref.features)


def shape_problems(arch: dict[str, Any], data: DataShape) -> list[str]:
    """Why a model with architecture ``arch`` cannot read samples shaped like ``data`` or predict its classes.

    The kit's MLP flattens its input, so for it only the number of features must agree."""
    problems = []
    model_shape = tuple(int(d) for d in arch.get("input_shape") or ())
    if arch.get("name") == "mlp":
        fits = math.prod(model_shape) == math.prod(data.input_shape)
    else:
        fits = model_shape == tuple(data.input_shape)
    if not fits:
        problems.append(
            f"the model takes input of shape {list(model_shape)}; the dataset's samples are {list(data.input_shape)}"
        )
    if arch.get("num_classes") != data.num_classes:
        problems.append(f"the model predicts {arch.get('num_classes')} classes; the dataset has {data.num_classes}")
    return problems


def input_or_builtin(input_arch: dict[str, Any] | None, data: DataShape, family: str) -> dict[str, Any]:
    """The model a kind gives back when it keeps its input model's architecture (pruned, retrained), or trains the
    kit's ``family`` sized for ``data`` (an MLP on tabular data) when it has no input model."""
    if input_arch is not None:
        return input_arch
    name = "mlp" if data.modality == "tabular" else family
    return {"name": name, "input_shape": list(data.input_shape), "num_classes": data.num_classes}


class JobKind(ABC):
    """One kind of job: its config schema with defaults, its budget, and its run function.

    Subclasses set ``name``, ``title``, ``description`` and ``schema`` (a JSON Schema object whose
    properties carry ``default``, bounds and ``description``), and implement :meth:`run`.
    """

    name: str
    title: str
    description: str
    schema: dict[str, Any]
    # The kit architecture families (``search_spaces.kit.models``) a job of this kind can start from, given as
    # a parent job's output model or an uploaded one; empty: the kind takes no input model.
    input_families: tuple[str, ...] = ()
    # Whether a job of this kind stores FPGA resource reports (the job page keeps their section open).
    fpga_reports: bool = False
    # The built-in dataset a job of this kind uses when none is named, and the modalities it takes.
    default_dataset: str = "digits"
    modalities: tuple[str, ...] = ("image", "tabular")
    # A config that runs to completion in seconds (at least 3 trials): the shared job-kind test suite,
    # the smoke tests and the benchmarks use it.
    tiny_config: dict[str, Any] = {}
    # The metric points the kind reports (names or glob patterns, first match wins), with unit and axis group.
    metrics: tuple[MetricSpec, ...] = ()

    @property
    def examples(self) -> dict[str, dict[str, Any]]:
        """Named configs to try the kind with: ``tiny`` (runs in seconds) and ``default`` (the schema's defaults);
        a kind may add more. Each is a partial config, filled with the defaults on submit."""
        return {"tiny": copy.deepcopy(self.tiny_config), "default": {}}

    def objectives(self, config: dict[str, Any]) -> tuple[Objective, ...]:
        """What each entry of the ``values`` a job with ``config`` reports per trial is, in order (a kind whose
        objectives follow its config, a single- or multi-objective mode, says so here). The default: one value,
        maximised."""
        return (Objective("objective"),)

    def metric_spec(self, metric: str) -> MetricSpec | None:
        """The declaration that covers metric name ``metric`` (the first that matches), ``None`` if none does."""
        return next((spec for spec in self.metrics if spec.matches(metric)), None)

    @property
    def accepts_model(self) -> bool:
        """Whether a parent job's or an uploaded model can be this kind's input."""
        return bool(self.input_families)

    def output_arch(
        self, config: dict[str, Any], data: DataShape, input_arch: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """What the model a job of this kind produces will be: a (partial) kit architecture dict with at least
        ``name``, ``input_shape`` and ``num_classes``, or ``None`` when the kind produces no model other jobs can
        start from. ``input_arch`` is the input model's architecture (``None``: the kind trains its own).

        The declaration lets the service and the tests know which chains of kinds fit together; the job's result
        carries the real one under ``output_arch``, next to ``output_model`` (the artifact's name)."""
        return None

    def input_model_problems(self, arch: dict[str, Any], data: DataShape) -> list[str]:
        """Why a model with architecture ``arch`` cannot be this kind's input on a dataset shaped ``data``; empty
        when it can. Checked at submit for a parent's output and an upload, so the worker never meets a model it
        cannot use. Kinds with more conditions extend it."""
        if not self.input_families:
            return [f"{self.name} does not take an input model"]
        problems = []
        family = arch.get("name")
        if family not in self.input_families:
            problems.append(f"{self.name} takes a {' or '.join(self.input_families)} model; this one is a {family}")
        problems += shape_problems(arch, data)
        return problems

    def config_type(self) -> type | None:
        """The frozen dataclass the algorithm reads its validated config as (built with
        :func:`search_spaces.kit.config.typed_config`); the shared contract test checks that its fields are the
        schema's properties. Imported when called: the algorithm's module may import torch."""
        return None

    def defaults(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v["default"]) for k, v in self.schema["properties"].items() if "default" in v}

    def validate(self, config: dict[str, Any] | None) -> dict[str, Any]:
        """Fill defaults and validate; raise :class:`ConfigError` with per-field messages."""
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ConfigError({"config": ["must be a JSON object"]})
        filled = {**self.defaults(), **config}
        validator = StrictValidator(self.schema)
        errors: dict[str, list[str]] = {}
        for err in validator.iter_errors(filled):
            path = ".".join(str(p) for p in err.absolute_path) or _unknown_key(err) or "config"
            errors.setdefault(path, []).append(err.message)
        if not errors:
            errors = self.check(filled)
        if errors:
            raise ConfigError(errors)
        return filled

    def check(self, config: dict[str, Any]) -> dict[str, list[str]]:
        """Cross-field checks after schema validation; return per-field messages (empty when fine)."""
        return {}

    def budget(self, config: dict[str, Any], data: DataShape | str | None = None) -> float:
        """A rough cost of the job in CPU-minutes on a 2-core machine, checked against per-user limits.

        ``data`` is the dataset the job works on, with its sample count and (for a built-in one) its name (a
        built-in's key will do; ``None``: the kind's default dataset, see :meth:`DataShape.of`). An upload's cost
        follows its size (see :func:`scaled_seconds`)."""
        return 1.0

    def helpers(self, config: dict[str, Any]) -> int:
        """How many helper runs the service should start beside the job (0: the job works alone).

        A kind whose work can be shared by several worker processes (trials of one Optuna study in the
        service's database) returns its parallelism minus one and implements :meth:`run_helper`.
        """
        return 0

    def run_helper(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter, index: int) -> None:
        """Help the running job ``index`` (1..helpers): report trials through ``reporter`` like the job does,
        read its checkpoint, stop on ``should_stop()``. The job's own :meth:`run` writes the result."""
        raise NotImplementedError(f"{self.name} has no helper runs")

    @abstractmethod
    def run(self, config: dict[str, Any], inputs: JobInputs, reporter: Reporter) -> dict[str, Any]:
        """Do the work and return the result summary (JSON-serialisable).

        Must check ``reporter.should_stop()`` often (raise :class:`JobCancelled` to stop) and, on a resume,
        skip the trials ``reporter.completed_trials()`` lists or restore ``reporter.load_checkpoint()``.
        """


def _unknown_key(err: jsonschema.ValidationError) -> str | None:
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - allowed)
        if extra:
            return extra[0]
    return None


class MemoryReporter:
    """A reporter that keeps everything in memory: for tests, notebooks and the CLI."""

    def __init__(
        self,
        *,
        stop_after_trials: int | None = None,
        checkpoint: bytes | None = None,
        completed: list[TrialRecord] | None = None,
        echo: bool = False,
    ) -> None:
        self.progress_values: list[tuple[float, str]] = []
        self.trials: dict[int, dict[str, Any]] = {}
        self.metrics: list[tuple[str, float, int, int | None]] = []
        self.artifacts: list[tuple[str, Path, str]] = []
        self.fpga_reports: list[tuple[int | None, dict[str, Any]]] = []
        self.checkpoint = checkpoint
        self._completed = list(completed or [])
        self._stop_after_trials = stop_after_trials
        self._echo = echo
        self.stopped = False

    def progress(self, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        self.progress_values.append((fraction, message))
        if self._echo:
            bar = "#" * int(fraction * 30)
            print(f"\r[{bar:<30}] {fraction:6.1%} {message[:60]:<60}", end="", flush=True)

    def trial(
        self,
        number: int,
        *,
        params: dict[str, Any],
        state: str = "complete",
        values: list[float] | None = None,
        metrics: dict[str, Any] | None = None,
        started: float | None = None,
        finished: float | None = None,
    ) -> None:
        if state not in TRIAL_STATES:
            raise ValueError(f"unknown trial state {state!r}")
        self.trials[number] = {
            "params": params,
            "state": state,
            "values": values,
            "metrics": metrics or {},
            "started": started,
            "finished": finished,
        }

    def metric(self, name: str, value: float, step: int, trial: int | None = None) -> None:
        if not math.isfinite(float(value)):
            return
        self.metrics.append((name, float(value), step, trial))

    def artifact(self, name: str, path: Path, kind: str) -> None:
        self.artifacts.append((name, Path(path), kind))

    def fpga_report(self, trial: int | None, fields: dict[str, Any]) -> None:
        self.fpga_reports.append((trial, fields))

    def should_stop(self) -> bool:
        if self._stop_after_trials is not None:
            done = sum(1 for t in self.trials.values() if t["state"] != "running")
            self.stopped = self.stopped or done >= self._stop_after_trials
        return self.stopped

    def save_checkpoint(self, state: bytes) -> None:
        self.checkpoint = state

    def load_checkpoint(self) -> bytes | None:
        return self.checkpoint

    def completed_trials(self) -> list[TrialRecord]:
        return self._completed

    def finished_trials(self) -> list[TrialRecord]:
        """What :meth:`completed_trials` would return to a resumed run of this job."""
        return [
            TrialRecord(n, t["params"], t["values"], t["metrics"], t["state"])
            for n, t in sorted(self.trials.items())
            if t["state"] != "running"
        ]
