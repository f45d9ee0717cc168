"""``python -m search_spaces``: a kind run from a shell, without Django, through the same contract as a worker's.

Each test starts the CLI in its own interpreter, as a user would, except the one that looks at the inputs the
run is given."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from search_spaces import registry
from search_spaces.cli import build_parser, prepare

ROOT = Path(__file__).resolve().parent.parent.parent
TINY = json.dumps({"trials": 3, "epochs": 2})


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "search_spaces", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def trials(out: Path) -> list[dict]:
    return json.loads((out / "trials.json").read_text())


def test_a_tiny_run_keeps_its_result_artifacts_trials_and_curves(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = cli("mlp_sweep", "--config", TINY, "--seed", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert json.loads(done.stdout) == result and result["dataset"] == "digits"
    assert (out / "artifacts" / "best_mlp.npz").stat().st_size > 0
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "succeeded" and run["config"]["seed"] == 3 and run["inputs"]["seed"] == 3
    assert {a["name"]: a["file"] for a in run["artifacts"]}["best_mlp.npz"] == "artifacts/best_mlp.npz"
    assert [(t["number"], t["state"]) for t in trials(out)] == [(0, "complete"), (1, "complete"), (2, "complete")]
    with open(out / "metrics.csv", newline="") as fh:
        names = {row["name"] for row in csv.DictReader(fh)}
    assert {"train_loss", "val_accuracy"} <= names
    assert "100.0%" in done.stderr  # the progress line
    assert not (out / "work").exists()  # scratch is gone; what was reported was copied


def test_a_config_file_and_an_own_csv_dataset_from_any_folder(tmp_path: Path) -> None:
    # Run outside the checkout: the venv has the project installed (``make deps``), no PYTHONPATH needed.
    rows = [f"{i % 7},{(i * 3) % 5},{i % 2},{i % 3}" for i in range(60)]
    (tmp_path / "data.csv").write_text("a,b,c,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "config.json").write_text(TINY)
    out = tmp_path / "run"
    done = cli(
        "mlp_sweep", "--config", f"@{tmp_path / 'config.json'}", "--dataset", "data.csv", "--out", "run", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["inputs"]["dataset_path"] == str(tmp_path / "data.csv")


def test_a_bad_config_is_refused_in_one_line_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = cli("mlp_sweep", "--config", '{"trials": 0, "epochs": 2}', "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "python -m search_spaces: error: bad config for mlp_sweep: trials: 0 is less than the minimum of 1"
    )
    assert not out.exists()
    assert "is not JSON" in cli("mlp_sweep", "--config", "{trials: 3}", "--out", str(out)).stderr


def test_an_unknown_kind_is_refused_with_the_list_of_kinds(tmp_path: Path) -> None:
    done = cli("no_such_kind", "--config", "{}", "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert f"the kinds are {', '.join(sorted(registry.KINDS))}" in done.stderr


def test_a_used_folder_is_refused_without_resume(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("")
    done = cli("mlp_sweep", "--config", TINY, "--out", str(tmp_path))
    assert done.returncode == 2 and "pass --resume" in done.stderr


def test_optuna_kinds_keep_their_study_in_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _, _, inputs, _, _ = prepare(build_parser().parse_args(["mlp_sweep", "--config", TINY, "--out", str(out)]))
    assert inputs.optuna_storage == f"sqlite:///{out}/optuna.sqlite3" and inputs.study_name == "mlp_sweep"
    assert inputs.workdir == out / "work" and inputs.dataset == "digits"


def test_ctrl_c_stops_cleanly_and_resume_does_not_redo_finished_trials(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["mlp_sweep", "--config", json.dumps({"trials": 3, "epochs": 300}), "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "search_spaces", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "trials.json").exists() and time.monotonic() < deadline:  # the first trial finished
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert json.loads((out / "run.json").read_text())["status"] == "stopped"
    assert not (out / "result.json").exists()
    first = trials(out)[0]
    assert first["state"] == "complete" and len([t for t in trials(out) if t["state"] == "complete"]) < 3

    done = cli(*args, "--resume", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [t["state"] for t in trials(out)] == ["complete"] * 3
    assert trials(out)[0]["started"] == first["started"]  # not trained again
    assert (out / "result.json").exists() and (out / "artifacts" / "best_mlp.npz").exists()
    assert cli(*args[:2], "{}", *args[3:], "--resume").returncode == 2  # another config: not this run
