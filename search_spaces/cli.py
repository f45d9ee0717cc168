"""``python -m search_spaces``: run one job kind from a shell, without the service.

    python -m search_spaces mlp_sweep --config '{"trials": 3, "epochs": 2}' --out runs/a
    python -m search_spaces granularity_sweep --config @sweep.json --dataset data.npz --out runs/b

The run goes through the contract a worker uses: the kind's ``validate``, a :class:`JobInputs` and a reporter,
here a :class:`DirReporter` that keeps everything in the ``--out`` folder:

* ``result.json``: what the kind returned (a job's ``result`` in the service);
* ``artifacts/``: the files it reported; ``trials.json``, ``metrics.csv`` and, for FPGA kinds, ``fpga_reports.json``;
* ``run.json``: the kind, the validated config, the inputs and how the run ended;
* ``optuna.sqlite3`` (the Optuna study of kinds that keep one) and ``checkpoint.bin``: what ``--resume`` continues.

Ctrl-C (or SIGTERM) asks the kind to stop through ``should_stop()``; finished trials are kept and ``--resume``
carries on from them. Exit status: 0 done, 1 the run failed, 2 a bad command line, config or input, 130 stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from search_spaces import registry
from search_spaces.base import (
    ConfigError,
    DataShape,
    JobCancelled,
    JobInputs,
    JobKind,
    MemoryReporter,
    json_safe,
)

PROG = "python -m search_spaces"
EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 1, 2, 130
FINISHED = ("complete", "pruned", "failed")


class UsageError(Exception):
    """A command line, config or input a run cannot start with; the message is the one line shown."""


class DirReporter(MemoryReporter):
    """A :class:`MemoryReporter` that keeps the run in ``out`` and shows its progress on stderr.

    Artifacts are copied into ``out/artifacts`` when reported (the kind may reuse its scratch files), the
    checkpoint and the finished trials are written as they come, so a stop or a crash loses only the trial in
    progress; curves and the rest are written by :meth:`finish`."""

    def __init__(self, out: Path, *, show_progress: bool = True) -> None:
        super().__init__()
        self.out = out
        self.artifact_dir = out / "artifacts"
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self._show = show_progress
        self._tty = sys.stderr.isatty()
        self._shown_at = 0.0

    @classmethod
    def resume(cls, out: Path, run: dict[str, Any], *, show_progress: bool = True) -> DirReporter:
        """The reporter of a stopped run in ``out``: its trials, curves, reports, artifacts and checkpoint."""
        reporter = cls(out, show_progress=show_progress)
        for t in _read_json(out / "trials.json", []):
            reporter.trials[int(t.pop("number"))] = t
        reporter._completed = reporter.finished_trials()
        finished = {t.number for t in reporter._completed}
        if (out / "metrics.csv").is_file():
            with open(out / "metrics.csv", newline="") as fh:
                points = [
                    (r["name"], float(r["value"]), int(r["step"]), int(r["trial"]) if r["trial"] else None)
                    for r in csv.DictReader(fh)
                ]
            # The curves of the trial that was stopped start again with it.
            reporter.metrics = [p for p in points if p[3] is None or p[3] in finished]
        reporter.fpga_reports = [(r["trial"], r["fields"]) for r in _read_json(out / "fpga_reports.json", [])]
        reporter.artifacts = [(a["name"], out / a["file"], a["kind"]) for a in run.get("artifacts", [])]
        if (out / "checkpoint.bin").is_file():
            reporter.checkpoint = (out / "checkpoint.bin").read_bytes()
        return reporter

    def progress(self, fraction: float, message: str = "") -> None:
        super().progress(fraction, message)
        fraction = self.progress_values[-1][0]
        now = time.monotonic()
        if not self._show or (fraction < 1.0 and now - self._shown_at < 0.2):
            return
        self._shown_at = now
        line = f"[{'#' * int(fraction * 30):<30}] {fraction:6.1%} {message[:60]}"
        sys.stderr.write(f"\r{line:<100}" if self._tty else f"{line}\n")
        sys.stderr.flush()

    def trial(self, number: int, *, params: dict[str, Any], state: str = "complete", **fields: Any) -> None:
        super().trial(number, params=params, state=state, **fields)
        if state in FINISHED:
            self._write_trials()

    def artifact(self, name: str, path: Path, kind: str) -> None:
        target = self.artifact_dir / Path(name).name
        if Path(path).resolve() != target.resolve():
            _write_atomically(target, lambda tmp: shutil.copyfile(path, tmp))
        self.artifacts = [a for a in self.artifacts if a[0] != name]
        super().artifact(name, target, kind)

    def save_checkpoint(self, state: bytes) -> None:
        super().save_checkpoint(state)
        _write_atomically(self.out / "checkpoint.bin", lambda tmp: tmp.write_bytes(state))

    def artifact_entries(self) -> list[dict[str, str]]:
        return [{"name": n, "kind": k, "file": str(p.relative_to(self.out))} for n, p, k in self.artifacts]

    def finish(self) -> None:
        """Write what is only kept in memory while the kind runs: the curves and the FPGA reports."""
        if self._show and self._tty:
            sys.stderr.write("\n")
        self._write_trials()
        with open(self.out / "metrics.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["name", "value", "step", "trial"])
            writer.writerows((n, v, s, "" if t is None else t) for n, v, s, t in self.metrics)
        if self.fpga_reports:
            reports = [{"trial": t, "fields": f} for t, f in self.fpga_reports]
            _write_json(self.out / "fpga_reports.json", reports)

    def _write_trials(self) -> None:
        _write_json(self.out / "trials.json", [{"number": n, **t} for n, t in sorted(self.trials.items())])


def build_parser() -> argparse.ArgumentParser:
    kinds = "\n".join(f"  {name:<18} {kind.title}" for name, kind in sorted(registry.KINDS.items()))
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run one job kind without the service, keeping everything it reports in --out.",
        epilog=f"kinds:\n{kinds}\n\nexit status: 0 done, 1 failed, 2 bad command line or config, 130 stopped",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", metavar="KIND", help="the job kind to run (listed below)")
    parser.add_argument(
        "--config", required=True, metavar="JSON|@FILE", help="the kind's config: a JSON object, or @ and a file"
    )
    parser.add_argument(
        "--dataset",
        metavar="NAME|PATH.npz|PATH.csv",
        help="a built-in dataset or a file of your own (default: the kind's)",
    )
    parser.add_argument("--model", metavar="PATH", help="the input model, for kinds that start from one")
    parser.add_argument("--seed", type=int, metavar="N", help="the run's seed (sets the config's seed)")
    parser.add_argument("--device", default="cpu", help="the torch device to train on (default: cpu)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder the run is kept in")
    parser.add_argument("--resume", action="store_true", help="carry on the stopped or failed run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kind, config, inputs, reporter, run = prepare(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return execute(kind, config, inputs, reporter, run)


def prepare(args: argparse.Namespace) -> tuple[JobKind, dict[str, Any], JobInputs, DirReporter, dict[str, Any]]:
    """Everything a run needs, checked before any work starts; :class:`UsageError` says what is wrong."""
    kind = registry.KINDS.get(args.kind)
    if kind is None:
        raise UsageError(f"unknown kind {args.kind!r}; the kinds are {', '.join(sorted(registry.KINDS))}")
    config = read_config(args.config)
    if args.seed is not None and isinstance(config, dict) and "seed" in kind.schema["properties"]:
        config = {**config, "seed": args.seed}
    try:
        config = kind.validate(config)
    except ConfigError as exc:
        raise UsageError(f"bad config for {kind.name}: {exc}") from None
    dataset, dataset_path, data = resolve_dataset(kind, args.dataset)
    model_path, model_arch = resolve_model(kind, args.model, data)
    out = Path(args.out).expanduser().resolve()
    seed = int(config.get("seed", args.seed or 0))
    described = {
        "seed": seed,
        "device": args.device,
        "dataset": dataset,
        "dataset_path": str(dataset_path) if dataset_path else None,
        "model_path": str(model_path) if model_path else None,
    }
    run = {"kind": kind.name, "config": json_safe(config), "inputs": described}
    if args.resume:
        previous = _read_json(out / "run.json", None)
        if previous is None:
            raise UsageError(f"--resume: {out} holds no run (no run.json)")
        if {k: previous.get(k) for k in run} != run:
            raise UsageError(f"--resume: {out} holds a run of another kind, config or inputs; see its run.json")
        run = previous
        reporter = DirReporter.resume(out, previous, show_progress=not args.quiet)
    else:
        if out.exists() and any(out.iterdir()):
            raise UsageError(f"{out} is not empty; pass --resume to carry on the run in it, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        reporter = DirReporter(out, show_progress=not args.quiet)
    workdir = out / "work"  # scratch, like a worker's: fresh for each attempt
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    inputs = JobInputs(
        seed=seed,
        device=args.device,
        dataset=dataset,
        dataset_path=dataset_path,
        model_path=model_path,
        model_arch=model_arch,
        optuna_storage=f"sqlite:///{out}/optuna.sqlite3",
        study_name=kind.name,
        workdir=workdir,
    )
    return kind, config, inputs, reporter, run


def read_config(text: str) -> Any:
    """The JSON of ``--config``: inline, or the file after an ``@``."""
    source = "--config"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"cannot read the config file {path}: {exc.strerror}") from None
        source = str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


def resolve_dataset(kind: JobKind, value: str | None) -> tuple[str | None, Path | None, DataShape]:
    """A built-in name or a ``.npz``/``.csv`` file, as :class:`JobInputs` takes it, and what its samples look like."""
    from search_spaces.kit import datasets

    value = value or kind.default_dataset
    if value.lower().endswith((".npz", ".csv")) or os.sep in value:
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise UsageError(f"no such dataset file: {value}")
        try:
            info = datasets.inspect(path)
        except datasets.DatasetError as exc:
            raise UsageError(f"dataset {value}: {exc}") from None
        name, data = None, DataShape(info["modality"], tuple(info["input_shape"]), int(info["num_classes"]))
    else:
        ok, reason = datasets.available(value)
        if not ok:
            raise UsageError(reason if value not in datasets.BUILTIN else f"dataset {value!r} is not here: {reason}")
        builtin = datasets.BUILTIN[value]
        name, path, data = value, None, DataShape(builtin.modality, builtin.input_shape, builtin.num_classes)
    if data.modality not in kind.modalities:
        modalities = " or ".join(kind.modalities)
        raise UsageError(f"{kind.name} needs a dataset of modality {modalities}; {value!r} is {data.modality}")
    return name, path, data


def resolve_model(kind: JobKind, value: str | None, data: DataShape) -> tuple[Path | None, dict[str, Any] | None]:
    """The input model's file and architecture, checked as the service checks an upload at submit."""
    if value is None:
        return None, None
    if not kind.accepts_model:
        raise UsageError(f"{kind.name} does not take an input model; drop --model")
    from search_spaces.kit import models  # torch: only when there is a model to read

    path = Path(value).expanduser().resolve()
    try:
        _, arch = models.load_model(path)
    except models.ModelError as exc:
        raise UsageError(f"model {value}: {exc}") from None
    problems = kind.input_model_problems(arch, data)
    if problems:
        raise UsageError(f"model {value} cannot be the input of {kind.name}: {'; '.join(problems)}")
    return path, arch


def execute(
    kind: JobKind, config: dict[str, Any], inputs: JobInputs, reporter: DirReporter, run: dict[str, Any]
) -> int:
    """Run the kind, keeping the run's state in ``reporter.out`` whichever way it ends; returns the exit status."""
    out = reporter.out

    def record(status: str, **fields: Any) -> None:
        run.update(status=status, artifacts=reporter.artifact_entries(), **fields)
        _write_json(out / "run.json", run)

    def stop(signum: int, frame: FrameType | None) -> None:
        reporter.stopped = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C does not wait
        print(f"\n{PROG}: stopping at the kind's next check (Ctrl-C again to abort)", file=sys.stderr)

    record("running", started=time.time(), finished=None, error=None)
    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = kind.run(config, inputs, reporter)
    except (JobCancelled, KeyboardInterrupt) as exc:
        return _ended(reporter, record, "stopped", EXIT_STOPPED, exc)
    except Exception as exc:  # the kind's failure is the run's, reported with its traceback
        if reporter.stopped:  # a child process that died of the same Ctrl-C
            return _ended(reporter, record, "stopped", EXIT_STOPPED, exc)
        traceback.print_exc()
        return _ended(reporter, record, "failed", EXIT_FAILED, exc)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    result = json_safe(result)
    reporter.finish()
    _write_json(out / "result.json", result)
    record("succeeded", finished=time.time())
    shutil.rmtree(inputs.workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


def _ended(reporter: DirReporter, record: Any, status: str, code: int, exc: BaseException) -> int:
    reporter.finish()
    error = None if status == "stopped" else f"{type(exc).__name__}: {exc}"
    record(status, finished=time.time(), error=error)
    what = "stopped" if status == "stopped" else f"failed: {error}"
    print(f"{PROG}: {what}; pass --resume with the same arguments to carry on in {reporter.out}", file=sys.stderr)
    return code


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(json_safe(value), indent=2)
    _write_atomically(path, lambda tmp: tmp.write_text(text))


def _write_atomically(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder and rename it, so a reader never sees half a file."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
