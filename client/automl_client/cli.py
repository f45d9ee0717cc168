"""``automl``: the service's REST API from a shell.

Results go to stdout (a job id, JSON, a table, file paths), progress and errors to stderr; an error is one
line (the server's own message for a refused request) and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from automl_client import config as config_file
from automl_client.api import ApiError, Client

SUBMIT_HELP = "a JSON object, or @FILE (JSON, or YAML if the file is not .json)"


# --- input --------------------------------------------------------------------------------------------------
def parse_config(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            raw = path.read_text()
        except OSError as exc:
            raise ApiError(f"--config: cannot read {path}: {exc.strerror}") from None
        try:
            value = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(f"--config: {path} does not parse: {' '.join(str(exc).split())}") from None
    else:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ApiError(f"--config: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError("--config: must be a JSON object")
    return value


def example_config(client: Client, kind: str, example: str | None) -> dict[str, Any]:
    """A kind's named example (``tiny``, ``default``, ...), the base a ``--config`` is laid over."""
    if not example:
        return {}
    examples = client.kind(kind).get("examples", {})
    if example not in examples:
        raise ApiError(f"{kind} has no example {example!r}; it has: {', '.join(sorted(examples))}")
    return dict(examples[example])


def load_chain(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """A pipeline file: ``steps`` (each ``kind`` and ``config`` or ``example``, optionally ``name``) and the first
    step's ``dataset``; or the list of steps alone."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ApiError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ApiError(f"{path} does not parse: {' '.join(str(exc).split())}") from None
    if isinstance(document, list):
        document = {"steps": document}
    if not isinstance(document, dict) or not isinstance(document.get("steps"), list) or not document["steps"]:
        raise ApiError(f"{path}: expected 'steps:', a list of {{kind, config}}")
    for number, step in enumerate(document["steps"], 1):
        if not isinstance(step, dict) or not isinstance(step.get("kind"), str):
            raise ApiError(f"{path}: step {number} has no kind")
        if not isinstance(step.get("config", {}), dict):
            raise ApiError(f"{path}: step {number}'s config is not a mapping")
    dataset = document.get("dataset")
    return document["steps"], None if dataset is None else str(dataset)


# --- output -------------------------------------------------------------------------------------------------
class ProgressBar:
    """One live line on a terminal (rewritten in place); one line per change when stderr is a file or a pipe."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.live = stream.isatty()
        self.last = ""

    def __call__(self, job: dict[str, Any]) -> None:
        done = min(max(float(job.get("progress") or 0.0), 0.0), 1.0)
        filled = round(done * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"job {job['id']} {job['status']:<9} [{bar}] {done:4.0%} {job.get('progress_message') or ''}".rstrip()
        if line == self.last:
            return
        if self.live:
            self.stream.write("\r" + line.ljust(len(self.last)))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last = line

    def close(self) -> None:
        if self.live and self.last:
            self.stream.write("\n")
            self.stream.flush()
        self.last = ""


def wait_for(client: Client, job_id: int, interval: float, want: str = "succeeded") -> dict[str, Any]:
    bar = ProgressBar()
    try:
        job = client.wait(job_id, interval=interval, on_update=bar)
    finally:
        bar.close()
    if job["status"] != want:
        reason = (job.get("error") or "").strip().splitlines()
        hint = f": {reason[0]}" if reason else ""
        if job["status"] == "paused" and want != "paused":
            hint = f"; resume it with 'automl resume {job_id}'"
        raise ApiError(f"job {job_id} {job['status']}{hint}")
    return job


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def print_table(rows: list[list[Any]], header: list[str], out: TextIO) -> None:
    cells = [header, *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def trial_rows(trials: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """One row per trial: its fields, then a column per parameter and per metric (as the trials name them)."""
    fixed = ["number", "state", "attempt", "values", "duration_seconds", "started_at", "finished_at"]
    params = sorted({k for t in trials for k in (t.get("params") or {})})
    metrics = sorted({k for t in trials for k in (t.get("metrics") or {})})
    header = fixed + [f"params.{k}" for k in params] + [f"metrics.{k}" for k in metrics]
    rows = [
        [t.get(k) for k in fixed]
        + [(t.get("params") or {}).get(k) for k in params]
        + [(t.get("metrics") or {}).get(k) for k in metrics]
        for t in trials
    ]
    return header, rows


def job_line(job: dict[str, Any]) -> str:
    pending = [f"{what} requested" for what in ("cancel", "pause") if job.get(f"{what}_requested")]
    pending_text = f" ({', '.join(pending)})" if pending and job["status"] == "running" else ""
    return f"job {job['id']}: {job['status']}{pending_text}"


# --- commands -----------------------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace, out: TextIO) -> None:
    url = args.url or os.environ.get("AUTOML_URL")
    if not url:
        raise ApiError("give the service's URL: automl login --url http://HOST:PORT (or set AUTOML_URL)")
    username = args.username or input("username: ")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    token = Client.obtain_token(url, username, password)
    path = config_file.save(url.rstrip("/"), token)
    print(f"logged in to {url} as {username}; token saved in {path}", file=sys.stderr)


def cmd_kinds(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    kinds = client.kinds()
    if args.json:
        json.dump(kinds, out, indent=2)
        out.write("\n")
    else:
        print_table([[k["name"], k["title"]] for k in kinds], ["kind", "title"], out)


def cmd_submit(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    config = {**example_config(client, args.kind, args.example), **parse_config(args.config)}
    job = client.submit(args.kind, config, name=args.name or "", dataset=args.dataset, parent=args.parent)
    print(f"submitted job {job['id']} ({job['kind']})", file=sys.stderr)
    if args.wait:
        job = wait_for(client, job["id"], args.interval)
    out.write(f"{job['id']}\n")


def cmd_status(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    json.dump(client.job(args.job), out, indent=2)
    out.write("\n")


def cmd_act(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    job = getattr(client, args.command)(args.job)
    if getattr(args, "wait", False):
        want = "paused" if args.command == "pause" else "succeeded"
        job = wait_for(client, args.job, args.interval, want=want)
    out.write(job_line(job) + "\n")


def cmd_trials(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    trials = client.trials(args.job)
    if args.format == "json":
        json.dump(trials, out, indent=2)
        out.write("\n")
        return
    if args.format == "csv":
        header, rows = trial_rows(trials)
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows([[_cell(v) for v in row] for row in rows])
        return
    print_table(
        [[t["number"], t["state"], t["attempt"], t["values"], t["duration_seconds"], t["params"]] for t in trials],
        ["number", "state", "attempt", "values", "seconds", "params"],
        out,
    )


def cmd_download(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    for path in client.download(args.job, args.out):
        out.write(f"{path}\n")


def cmd_chain(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    steps, dataset = load_chain(Path(args.file))
    parent: int | None = None
    for number, step in enumerate(steps, 1):
        kind = step["kind"]
        config = {**example_config(client, kind, step.get("example")), **(step.get("config") or {})}
        first = parent is None
        job = client.submit(
            kind,
            config,
            name=str(step.get("name") or ""),
            dataset=step.get("dataset", dataset) if first else step.get("dataset"),
            parent=parent,
        )
        print(f"step {number}/{len(steps)}: job {job['id']} ({kind})", file=sys.stderr)
        job = wait_for(client, job["id"], args.interval)
        out.write(f"{job['id']}\n")
        out.flush()
        parent = job["id"]


# --- the parser ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="automl",
        description="Submit, watch and fetch AutoML jobs. The service and token come from AUTOML_URL and "
        "AUTOML_TOKEN, else from the file 'automl login' writes ($AUTOML_CONFIG, ~/.config/automl/config.json).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("login", help="get a token and save it with the URL (file mode 0600)")
    p.add_argument("--url", help="the service's root URL (default: AUTOML_URL)")
    p.add_argument("--username", "-u")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin, not a prompt")

    p = sub.add_parser("kinds", help="list the job kinds")
    p.add_argument("--json", action="store_true", help="every kind's schema, defaults and examples as JSON")

    p = sub.add_parser("submit", help="submit a job; prints its id")
    p.add_argument("kind")
    p.add_argument("--config", help=SUBMIT_HELP)
    p.add_argument("--example", help="start from the kind's named example config (tiny, default, ...)")
    p.add_argument("--dataset", help="a dataset id or built-in key (default: the kind's, or the parent's)")
    p.add_argument("--parent", type=int, help="a succeeded job whose output model is this job's input")
    p.add_argument("--name")
    p.add_argument("--wait", action="store_true", help="wait with a progress bar; fail unless it succeeds")

    for name, text in (
        ("status", "a job as JSON"),
        ("cancel", "cancel a queued, running or paused job"),
        ("pause", "pause a queued or running job (checkpoint kept)"),
        ("resume", "queue a paused job again; it goes on from its checkpoint"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("job", type=int)
        if name in ("pause", "resume"):
            p.add_argument("--wait", action="store_true", help="until paused (pause) or succeeded (resume)")

    p = sub.add_parser("trials", help="a job's trials")
    p.add_argument("job", type=int)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")

    p = sub.add_parser("download", help="every artifact of a job, each sha256 checked; prints the paths")
    p.add_argument("job", type=int)
    p.add_argument("--out", default=".", help="folder to write into (default: here)")

    p = sub.add_parser("chain", help="run a pipeline of kinds from a YAML file, each the parent of the next")
    p.add_argument("file")

    for p in sub.choices.values():
        p.add_argument("--interval", type=float, default=1.0, help="seconds between polls while waiting")
    return parser


COMMANDS = {
    "kinds": cmd_kinds,
    "submit": cmd_submit,
    "status": cmd_status,
    "cancel": cmd_act,
    "pause": cmd_act,
    "resume": cmd_act,
    "trials": cmd_trials,
    "download": cmd_download,
    "chain": cmd_chain,
}


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    try:
        if args.command == "login":
            cmd_login(args, out)
        else:
            COMMANDS[args.command](Client.from_config(), args, out)
    except ApiError as exc:
        print(f"automl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("automl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
