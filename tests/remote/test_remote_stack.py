"""The generated Janus and coturn configs of `vr-trainer mentor stack up` (no servers
started here; tests/remote/test_fanout_janus.py starts them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
from pathlib import Path

import pytest
from remote_helpers import need

from remote.errors import RemoteError
from remote.stack import (StackConfig, coturn_config, find_program, janus_configs, plan_stack, turn_credentials,
                          write_configs)

CONFIG = StackConfig(bind_ip="127.0.0.1", media_ip="10.77.9.1", ws_port=8188, turn_port=3478)


def test_janus_api_on_the_bind_address_only_with_secrets_and_no_admin(tmp_path: Path) -> None:
    info = plan_stack(tmp_path, CONFIG)
    files = janus_configs(info, CONFIG, tmp_path)
    main, ws, room = files["janus.jcfg"], files["janus.transport.websockets.jcfg"], files["janus.plugin.videoroom.jcfg"]
    assert f'api_secret = "{info.api_secret}"' in main
    assert 'ice_enforce_list = "10.77.9.1"' in main and "broadcast = false" in main
    assert f'plugins_folder = "{tmp_path / "janus" / "plugins"}"' in main
    assert 'ws_ip = "127.0.0.1"' in ws and "ws_port = 8188" in ws
    assert "admin_ws = false" in ws and "admin_wss = false" in ws and "wss = false" in ws
    assert f"room-{info.room}: {{" in room
    assert f'pin = "{info.pin}"' in room and f'secret = "{info.room_secret}"' in room
    assert f'admin_key = "{info.admin_key}"' in room and "publishers = 1" in room
    assert info.janus_ws == "ws://127.0.0.1:8188"


def test_every_stack_gets_its_own_secrets(tmp_path: Path) -> None:
    a, b = plan_stack(tmp_path, CONFIG), plan_stack(tmp_path, CONFIG)
    for field in ("api_secret", "admin_key", "room_secret", "pin", "turn_secret"):
        assert getattr(a, field) != getattr(b, field) and len(getattr(a, field)) >= 16, field


def test_coturn_listens_and_relays_on_the_media_address_with_a_static_auth_secret(tmp_path: Path) -> None:
    info = plan_stack(tmp_path, CONFIG)
    lines = coturn_config(info, CONFIG, tmp_path).splitlines()
    for want in ("listening-ip=10.77.9.1", "relay-ip=10.77.9.1", "listening-port=3478", "use-auth-secret",
                 f"static-auth-secret={info.turn_secret}", "no-cli", "no-tls", f"userdb={tmp_path / 'turndb'}"):
        assert want in lines, want
    assert info.turn_url == "turn:10.77.9.1:3478?transport=udp"


def test_turn_credentials_are_coturns_rest_api_form() -> None:
    user, password = turn_credentials("s3cret", "observer", 600, now_s=1000.0)
    assert user == "1600:observer"
    assert password == base64.b64encode(hmac.new(b"s3cret", b"1600:observer", hashlib.sha1).digest()).decode()


def test_janus_api_may_not_listen_everywhere(tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="must not listen on every interface"):
        plan_stack(tmp_path, StackConfig(bind_ip="0.0.0.0", media_ip="10.77.9.1"))


def test_missing_server_names_the_debian_package() -> None:
    with pytest.raises(RemoteError, match="apt-get install coturn"):
        find_program("no-such-turnserver-here", "coturn")


def test_only_the_videoroom_plugin_and_websocket_transport_are_loaded(tmp_path: Path) -> None:
    need(shutil.which("janus") is not None, "Debian's janus package (scripts/setup.sh test installs it)")
    info = plan_stack(tmp_path, CONFIG)
    write_configs(tmp_path, CONFIG, info)
    assert [p.name for p in (tmp_path / "janus" / "plugins").iterdir()] == ["libjanus_videoroom.so"]
    assert [p.name for p in (tmp_path / "janus" / "transports").iterdir()] == ["libjanus_websockets.so"]
    assert (tmp_path / "janus" / "janus.jcfg").stat().st_mode & 0o077 == 0
    assert (tmp_path / "turnserver.conf").stat().st_mode & 0o077 == 0
