"""`ablate node`: this host's devices as Ray resources, and the `ray start` line."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.cluster.node import (
    NodeDevices,
    attached_phones,
    parse_adb_devices,
    ray_start_command,
)

# `adb devices` as it prints them: a header, then SERIAL<TAB>STATE; a blank line at the end.
ADB_OUTPUT = (
    "List of devices attached\n"
    "HT4CTJT00123\tdevice\n"
    "emulator-5554\toffline\n"
    "R58M123ABC\tunauthorized\n"
    "0123456789ABCDEF\tdevice\n"
    "\n"
)


def _fake_adb(tmp_path: Path, body: str) -> Path:
    adb = tmp_path / "adb"
    adb.write_text(f"#!/bin/sh\n{body}\n")
    adb.chmod(0o755)
    return adb


def test_only_ready_phones_are_devices() -> None:
    assert parse_adb_devices(ADB_OUTPUT) == ["HT4CTJT00123", "0123456789ABCDEF"]
    assert parse_adb_devices("List of devices attached\n\n") == []


def test_phones_come_from_the_adb_that_is_named(tmp_path: Path) -> None:
    output = ADB_OUTPUT.replace("\n", "\\n").replace("\t", "\\t")
    adb = _fake_adb(tmp_path, f'[ "$1" = devices ] && printf "{output}"')
    assert attached_phones(str(adb)) == (("HT4CTJT00123", "0123456789ABCDEF"), None)
    failing = _fake_adb(tmp_path, "exit 3")
    assert attached_phones(str(failing)) == ((), f"{failing} devices exited with status 3")


def test_the_line_names_every_device_as_one_unit_of_its_resource() -> None:
    devices = NodeDevices("lab-7", ("eager", "executorch"), ("HT4CTJT00123",), None)
    assert devices.device_names() == [
        "eager-host-lab-7",
        "executorch-host-lab-7",
        "HT4CTJT00123",
    ]
    joining = ray_start_command(devices, address="10.0.0.1:6379", cpus=4)
    assert joining[:4] == ["ray", "start", "--address=10.0.0.1:6379", "--num-cpus=4"]
    assert json.loads(joining[4].removeprefix("--resources=")) == {
        "ablate-device:HT4CTJT00123": 1,
        "ablate-device:eager-host-lab-7": 1,
        "ablate-device:executorch-host-lab-7": 1,
    }
    head = ray_start_command(NodeDevices("lab-7", (), (), "no adb"), address=None)
    assert head == ["ray", "start", "--head", "--port=6379"]


def test_node_command_prints_this_hosts_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = "List of devices attached\\nSERIAL42\\tdevice\\n"
    monkeypatch.setenv("ADB", str(_fake_adb(tmp_path, f'printf "{output}"')))
    monkeypatch.delenv("BENCHMARK_BINARY", raising=False)
    result = CliRunner().invoke(app, ["node", "--address", "head:6379", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    host = socket.gethostname()
    assert payload["hostname"] == host
    assert f"eager-host-{host}" in payload["devices"] and "SERIAL42" in payload["devices"]
    assert payload["resources"]["ablate-device:SERIAL42"] == 1
    assert payload["command"][:3] == ["ray", "start", "--address=head:6379"]
    assert payload["phones"].startswith("set BENCHMARK_BINARY to the runtime's benchmark binary")
    monkeypatch.setenv("BENCHMARK_BINARY", "/opt/executor_runner")
    named = CliRunner().invoke(app, ["node", "--json"])
    assert json.loads(named.output)["phones"] is None
    monkeypatch.delenv("BENCHMARK_BINARY")
    plain = CliRunner().invoke(app, ["node"])
    assert plain.exit_code == 0
    assert plain.output.splitlines()[-1].startswith("ray start --head --port=6379 '--resources=")
