"""The `automl` client's own logic, without a server: the config file, error lines, input files, the bar."""

from __future__ import annotations

import ast
import io
import json
import socket
import stat
import sys
import threading
from pathlib import Path

import pytest
from automl_client import ApiError, Client, cli, config
from automl_client.api import _safe_relative, error_message

CLIENT = Path(__file__).resolve().parents[2] / "client" / "automl_client"


def test_the_config_file_is_private_and_the_environment_wins(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    path = tmp_path / "sub" / "config.json"
    monkeypatch.setenv("AUTOML_CONFIG", str(path))
    monkeypatch.delenv("AUTOML_URL", raising=False)
    monkeypatch.delenv("AUTOML_TOKEN", raising=False)
    with pytest.raises(ApiError, match="automl login"):
        config.load()
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)  # an older file: its mode must not survive
    assert config.save("http://svc", "t0k") == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load() == ("http://svc", "t0k")
    monkeypatch.setenv("AUTOML_TOKEN", "other")
    monkeypatch.setenv("AUTOML_URL", "http://elsewhere")
    assert config.load() == ("http://elsewhere", "other")


def test_the_default_config_lives_under_the_users_config_folder(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.delenv("AUTOML_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config.config_path() == tmp_path / "automl" / "config.json"


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ({"detail": "Invalid token."}, "Invalid token."),
        ({"config.trials": ["0 is less than the minimum of 1"]}, "config.trials: 0 is less than the minimum of 1"),
        (
            {"non_field_errors": ["you have 10 queued or running jobs"], "kind": "x"},
            "you have 10 queued or running jobs; kind: x",
        ),
        (["a", "b"], "a; b"),
    ],
)
def test_the_servers_refusal_becomes_one_line(body: object, line: str) -> None:
    assert error_message(body) == line


def test_artifact_names_stay_inside_the_output_folder() -> None:
    assert _safe_relative("../../etc/passwd") == Path("etc/passwd")
    assert _safe_relative("/abs/model.pt") == Path("abs/model.pt")
    with pytest.raises(ApiError):
        _safe_relative("..")


def test_config_from_json_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("trials: 3\nepochs: 2\n")
    (tmp_path / "c.json").write_text('{"trials": 4}')
    assert cli.parse_config('{"trials": 2}') == {"trials": 2}
    assert cli.parse_config(f"@{tmp_path / 'c.yaml'}") == {"trials": 3, "epochs": 2}
    assert cli.parse_config(f"@{tmp_path / 'c.json'}") == {"trials": 4}
    for bad, message in (("[1]", "must be a JSON object"), ("{", "not JSON"), ("@/nonexistent.json", "cannot read")):
        with pytest.raises(ApiError, match=message):
            cli.parse_config(bad)


def test_a_chain_file_is_checked_before_anything_is_submitted(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("dataset: digits\nsteps:\n  - {kind: a, example: tiny}\n  - {kind: b, config: {x: 1}}\n")
    steps, dataset = cli.load_chain(good)
    assert [s["kind"] for s in steps] == ["a", "b"] and dataset == "digits"
    bare = tmp_path / "bare.yaml"
    bare.write_text("- kind: a\n")
    assert cli.load_chain(bare) == ([{"kind": "a"}], None)
    for text, message in (
        ("steps: []", "expected 'steps:'"),
        ("steps: [{config: {}}]", "step 1 has no kind"),
        ("steps: [{kind: a, config: [1]}]", "not a mapping"),
        ("steps: [", "does not parse"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ApiError, match=message):
            cli.load_chain(bad)


def test_the_progress_bar_writes_a_line_per_change_when_not_on_a_terminal() -> None:
    stream = io.StringIO()
    bar = cli.ProgressBar(stream, width=10)
    for progress in (0.0, 0.5, 0.5, 1.0):
        bar({"id": 7, "status": "running", "progress": progress, "progress_message": "trial 2/4"})
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "job 7 running   [----------]   0% trial 2/4",
        "job 7 running   [#####-----]  50% trial 2/4",
        "job 7 running   [##########] 100% trial 2/4",
    ]


def test_trials_as_csv_columns_name_each_parameter_and_metric() -> None:
    header, rows = cli.trial_rows(
        [
            {
                "number": 0,
                "state": "complete",
                "attempt": 1,
                "values": [0.9],
                "params": {"lr": 0.1},
                "metrics": {"acc": 1},
            }
        ]
    )
    assert header[-2:] == ["params.lr", "metrics.acc"] and rows[0][-2:] == [0.1, 1]
    assert json.loads(cli._cell(rows[0][3])) == [0.9]


def test_usage_errors_exit_2_and_api_errors_exit_1(monkeypatch, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        cli.main(["status"])
    assert exc.value.code == 2
    capsys.readouterr()
    monkeypatch.setenv("AUTOML_URL", "http://127.0.0.1:9")
    assert cli.main(["status", "1"]) == 1
    assert capsys.readouterr().err == "automl: error: cannot reach http://127.0.0.1:9: [Errno 111] Connection refused\n"


def test_the_client_imports_nothing_of_the_server() -> None:
    allowed = {"automl_client", "requests", "urllib3", "yaml", "__future__"}  # its declared dependencies
    for path in CLIENT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in sys.stdlib_module_names, f"{path.name}: {name}"


def _raw_server(answers: list[bytes | None]) -> tuple[str, list[str], threading.Thread]:
    """A server on a real socket that takes one connection per item of ``answers``, reads the request on it and
    sends that answer, or closes it without a word for ``None`` (a connection closed as a request arrived).
    Returns its URL, the request lines it read, and its thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    seen: list[str] = []

    def serve() -> None:
        with listener:
            for answer in answers:
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    return
                with conn:
                    seen.append(conn.recv(65536).split(b"\r\n", 1)[0].decode())
                    if answer is not None:
                        conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", seen, thread


def _ok(body: bytes, content_type: str = "application/json") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def test_a_get_on_a_dropped_connection_is_sent_again_once() -> None:
    url, seen, thread = _raw_server([None, _ok(b"{}")])
    assert Client(url).request("GET", "/api/v1/jobs/1/").json() == {}
    thread.join(10)
    assert seen == ["GET /api/v1/jobs/1/ HTTP/1.1"] * 2


def test_a_post_on_a_dropped_connection_is_not_sent_again() -> None:
    url, seen, thread = _raw_server([None])
    with pytest.raises(ApiError, match="cannot reach .*(aborted|closed)"):
        Client(url).request("POST", "/api/v1/jobs/", json={"kind": "mlp_sweep"})
    assert seen == ["POST /api/v1/jobs/ HTTP/1.1"]  # one submit, whatever became of it
    thread.join(10)


def test_a_get_dropped_twice_is_an_error_not_a_loop() -> None:
    url, seen, thread = _raw_server([None, None])
    with pytest.raises(ApiError, match="cannot reach"):
        Client(url).request("GET", "/api/v1/jobs/")
    assert len(seen) == 2
    thread.join(10)


def test_a_download_whose_sha256_does_not_match_is_not_kept(tmp_path: Path) -> None:
    url, _, thread = _raw_server([_ok(b"weights that changed on the way", "application/octet-stream")])
    artifact = {"name": "model/best.pt", "download_url": f"{url}/a/1/", "sha256": "0" * 64}
    with pytest.raises(ApiError, match="model/best.pt: sha256 [0-9a-f]{64} does not match the API's 0{64}"):
        Client(url).download_artifact(artifact, tmp_path)
    thread.join(10)
    assert list(tmp_path.rglob("*")) == [tmp_path / "model"]  # no file, whole or partial, left behind
