"""`vr-trainer mentor ...`, `bench stream` registration, and `run --mentor` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remote.server import ServerConfig, ServerThread
from remote.tokens import TokenSigner, load_or_create_secret

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)


def cli(*args: str, env: dict | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "vr_trainer", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=e, cwd=REPO)


def main(capsys, *args: str) -> tuple[int, str, str]:
    from vr_trainer.cli import main as vr_main

    code = vr_main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_token_command_issues_tokens_the_server_accepts(tmp_path, capsys):
    secret_file = tmp_path / "secret"
    code, stdout, _ = main(capsys, "mentor", "token", "--session", "or-1", "--role", "expert", "--name", "Dr Zhang",
              "--ttl", "30m", "--server", "http://127.0.0.1:9999", "--json", "--secret-file", str(secret_file))
    assert code == 0
    doc = json.loads(stdout)
    assert doc["link"] == f"http://127.0.0.1:9999/console#token={doc['token']}"
    claims = TokenSigner(load_or_create_secret(secret_file)).verify(doc["token"])
    assert (claims.session_id, claims.role, claims.name) == ("or-1", "expert", "Dr Zhang")
    assert 1790 <= claims.expires_s - claims.issued_s <= 1800
    _, stdout, _ = main(capsys, "mentor", "token", "--session", "or-1", "--role", "trainee", "--secret-file",
                        str(secret_file))
    assert "vr-trainer run --mentor http://127.0.0.1:8765 --token vrt1." in stdout


@pytest.mark.parametrize("args,message", [
    (["mentor", "token", "--session", "bad id", "--role", "expert"], "session id"),
    (["mentor", "token", "--session", "s", "--role", "expert", "--ttl", "forever"], "duration"),
    (["mentor", "serve", "--host", "0.0.0.0"], "without TLS"),
    (["mentor", "serve", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "no such TLS file"),
])
def test_user_mistakes_exit_2_with_a_message(tmp_path, capsys, args, message):
    code, _, err = main(capsys, *args, "--secret-file", str(tmp_path / "s"))
    assert code == 2 and err.startswith("error: ") and message in err, err


def test_bench_stream_and_schema_are_registered(capsys):
    with pytest.raises(SystemExit) as e:
        main(capsys, "bench", "stream", "--help")
    assert e.value.code == 0 and "--fps" in capsys.readouterr().out
    code, stdout, _ = main(capsys, "mentor", "schema")
    assert code == 0 and json.loads(stdout)["version"] == 1


def test_run_with_mentor_publishes_and_a_refused_token_is_a_user_error(tmp_path):
    secret_file = tmp_path / "secret"
    signer = TokenSigner(load_or_create_secret(secret_file))
    with ServerThread(signer, ServerConfig(port=0)) as srv:
        token = signer.issue("cli-run", "trainee", "resident")
        out = cli("run", "--backend", "headless", "--frames", "20", "--size", "320x240", "--mentor",
                  f"{srv.url}?audio=none", "--token", token)
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout.strip().splitlines()[-1])["frames"] == 20
        assert srv.server.counters["joined_trainee"] == 1
        expert = cli("run", "--backend", "headless", "--frames", "5", "--size", "320x240", "--mentor", srv.url,
                     "--token", signer.issue("cli-run", "expert"))
        assert expert.returncode == 2 and "needs a trainee token" in expert.stderr, expert.stderr[-2000:]
        forged = cli("run", "--backend", "headless", "--frames", "5", "--size", "320x240", "--mentor", srv.url,
                     "--token", "vrt1.forged.token")
        assert forged.returncode == 2 and "refused this session" in forged.stderr
