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
    assert f"vr-trainer run --mentor http://127.0.0.1:8765 --token {stdout.split()[0]}" in stdout


def test_token_command_prints_links_for_the_server_it_is_told_about(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("VR_TRAINER_MENTOR_URL", raising=False)
    base = ["mentor", "token", "--session", "or-7", "--secret-file", str(tmp_path / "secret")]
    _, out, _ = main(capsys, *base, "--role", "trainee", "--server", "https://mentor.hospital.cn:9443/or/")
    tok = out.split()[0]
    assert f"vr-trainer run --mentor https://mentor.hospital.cn:9443/or --token {tok}" in out
    assert "8765" not in out and "VR_TRAINER_MENTOR_CA" in out
    _, out, _ = main(capsys, *base, "--role", "observer", "--server", "http://10.1.2.3:9000", "--json")
    doc = json.loads(out)
    assert doc["link"] == f"http://10.1.2.3:9000/console#token={doc['token']}" and doc["server"] == "http://10.1.2.3:9000"
    monkeypatch.setenv("VR_TRAINER_MENTOR_URL", "http://teach.local:8080")
    _, out, _ = main(capsys, *base, "--role", "expert", "--json")
    assert json.loads(out)["link"].startswith("http://teach.local:8080/console#token=")
    for bad in ("mentor.hospital.cn:9443", "http://h:1/?fps=60", "ftp://h", "http://h:port"):
        code, _, err = main(capsys, *base, "--role", "expert", "--server", bad)
        assert code == 2 and "--server" in err, (bad, err)


def test_token_command_finds_the_server_running_here(tmp_path, capsys, monkeypatch):
    """`mentor serve --port 0` notes where it listens; `mentor token` without --server points there."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    monkeypatch.delenv("VR_TRAINER_MENTOR_URL", raising=False)
    e = {**os.environ, "PYTHONPATH": str(REPO), **env}
    proc = subprocess.Popen([sys.executable, "-m", "vr_trainer", "mentor", "serve", "--port", "0"], cwd=REPO, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.split()[3]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":8765"), first
        assert f"mentor token --server {url}" in proc.stdout.readline()
        _, out, _ = main(capsys, "mentor", "token", "--session", "s", "--role", "expert", "--json")
        assert json.loads(out)["link"].startswith(f"{url}/console#token=")
        # another secret: that server would refuse the token, so the link does not point at it
        _, out, _ = main(capsys, "mentor", "token", "--session", "s", "--role", "expert", "--json",
                         "--secret-file", str(tmp_path / "other"))
        assert json.loads(out)["link"].startswith("http://127.0.0.1:8765/console")
    finally:
        proc.terminate()
        proc.wait(15)
    _, out, _ = main(capsys, "mentor", "token", "--session", "s", "--role", "expert", "--json")
    assert json.loads(out)["link"].startswith("http://127.0.0.1:8765/console"), "a stopped server is forgotten"


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
        assert "made by an older vr-trainer" in forged.stderr, forged.stderr[-2000:]


def test_mentor_url_option_view_sets_what_viewers_watch_first():
    from remote.errors import RemoteError
    from remote.trainee import config_from_options

    assert config_from_options({}).stream.default_view == "eye"
    assert config_from_options({"view": "both"}).stream.default_view == "both"
    with pytest.raises(RemoteError, match="view must be one of eye, both"):
        config_from_options({"view": "carm"})
