"""Secure aggregation on Flower's Deployment Engine: TLS SuperLink with SuperNode authentication, three SuperNodes, ``flwr run``.

How to run it by hand (the demo does what this test automates; ``$D`` is a scratch directory,
``$PORT`` a free loopback port, the venv's ``bin`` on ``PATH``)::

    export FLWR_HOME=$D/home FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
    # 1. TLS material and SuperNode auth keys (keys/tls.py)
    python -c "from keys.tls import *; write_tls_files('$D/tls'); \
               [generate_supernode_auth_keys('$D/auth', f'node{i}') for i in range(3)]"
    # 2. SuperLink: TLS, SuperNode authentication on, no runtime `uv sync`
    flower-superlink --ssl-ca-certfile $D/tls/ca.crt --ssl-certfile $D/tls/server.pem \
        --ssl-keyfile $D/tls/server.key --enable-supernode-auth \
        --disable-runtime-dependency-installation --host 127.0.0.1 --port $PORT &
    # 3. CLI connection ($FLWR_HOME/config.toml), then register each SuperNode's public key;
    #    `--format json` prints its node id
    printf '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:%s"\nroot-certificates = "%s"\n' \
        $PORT $D/tls/ca.crt > $FLWR_HOME/config.toml
    flwr supernode register $D/auth/node0.pub --format json        # likewise node1, node2
    # 4. Per node: Ed25519 identity (keys/identity.py) and an input file
    #    {"identity_key_path": ..., "roster": {"<node id>": "<b64 key>"}, "vector": [...]};
    #    the roster (same map) also goes to $D/roster.json for the ServerApp.
    # 5. SuperNodes (TLS, auth key, input file via node config, own runtime port each)
    flower-supernode --root-certificates $D/tls/ca.crt --superlink 127.0.0.1:$PORT \
        --auth-supernode-private-key $D/auth/node0.key \
        --node-config 'secagg-input="'$D'/node0/input.json"' --port $((PORT+1)) &   # likewise 1, 2
    # 6. The app: a directory holding the FAB project of write_fab_project() below
    flwr run $D/app local --run-config 'round-id="r1" vector-length=4 \
        roster-path="'$D'/roster.json" result-path="'$D'/result.json"'
    # 7. $D/result.json appears when the ServerApp is done: the sum, contributors, dropouts.

The ServerApp runs in a ``flwr-serverapp`` process started by the SuperLink's SuperExec, each
ClientApp message in a ``flwr-clientapp`` process started by its SuperNode; both import
``protocols.flower_apps`` from this repository (installed in the venv, or via ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aggregator import flower_runner
from keys.identity import generate_identity, public_key_b64, save_private_key
from keys.tls import generate_supernode_auth_keys, write_tls_files

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def write_fab_project(directory: Path) -> Path:
    """The Flower App project ``flwr run`` bundles, naming our secagg apps with the JSON-file provider."""
    return flower_runner.write_fab_project(directory, serverapp="protocols.flower_apps:secagg_server_app",
                                           clientapp="protocols.flower_apps:secagg_client_app")


def free_port() -> int:
    """A loopback TCP port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Processes:
    """Processes started by the test, each in its own process group, stopped by id."""

    directory: Path
    env: dict[str, str]
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.directory / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                args, cwd=self.directory, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        # Each child leads its own process group, so its SuperExec / app subprocesses stop with it.
        for proc in reversed(list(self.started.values())):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.started.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def cli(procs: Processes, *args: str) -> str:
    out = subprocess.run(
        [str(BIN / "flwr"), *args],
        cwd=procs.directory,
        env=procs.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"flwr {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    env = {
        **os.environ,
        "FLWR_HOME": str(tmp_path / "home"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        # SuperExec is looked up on PATH; apps import this repository's packages.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    procs = Processes(tmp_path, env)
    try:
        yield procs
    finally:
        procs.stop_all()


def test_secure_sum_over_tls_superlink_with_authenticated_supernodes(processes: Processes, tmp_path: Path) -> None:
    # Prepare: TLS SuperLink with SuperNode authentication
    tls = write_tls_files(tmp_path / "tls")
    port = free_port()
    superlink = processes.start(
        "superlink",
        [
            str(BIN / "flower-superlink"),
            *(
                "--ssl-ca-certfile",
                str(tls.ca_cert),
                "--ssl-certfile",
                str(tls.server_cert),
                "--ssl-keyfile",
                str(tls.server_key),
            ),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
    )
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{port}"\nroot-certificates = "{tls.ca_cert}"\n'
    )
    wait_for_port(port, 30)
    assert superlink.poll() is None, processes.log("superlink")

    # Register three SuperNodes' auth keys; each gets its node id
    auth = [generate_supernode_auth_keys(tmp_path / "auth", f"node{i}") for i in range(3)]
    node_ids = [
        int(json.loads(cli(processes, "supernode", "register", str(a.public_key), "--format", "json"))["node-id"])
        for a in auth
    ]

    # Each node: an Ed25519 identity, the roster, its vector (large values: exactness matters)
    identities = {node: generate_identity() for node in node_ids}
    roster = {str(node): public_key_b64(key) for node, key in identities.items()}
    (tmp_path / "roster.json").write_text(json.dumps(roster))
    vectors = {node: [(i + 1) * 10**15 + 7 * k - 3 for k in range(5)] for i, node in enumerate(node_ids)}
    for i, node in enumerate(node_ids):
        node_dir = tmp_path / f"node{i}"
        node_dir.mkdir()
        save_private_key(identities[node], node_dir / "identity.pem")
        (node_dir / "input.json").write_text(
            json.dumps({"identity_key_path": "identity.pem", "roster": roster, "vector": vectors[node]})
        )
        processes.start(
            f"supernode{i}",
            [
                str(BIN / "flower-supernode"),
                *("--root-certificates", str(tls.ca_cert), "--superlink", f"127.0.0.1:{port}"),
                *("--auth-supernode-private-key", str(auth[i].private_key)),
                *("--node-config", f'secagg-input="{node_dir / "input.json"}"'),
                *("--port", str(free_port())),
            ],
        )
    # A SuperNode whose key was never registered must be turned away.
    rogue_key = generate_supernode_auth_keys(tmp_path / "auth", "rogue")
    rogue = processes.start(
        "rogue",
        [
            str(BIN / "flower-supernode"),
            *("--root-certificates", str(tls.ca_cert), "--superlink", f"127.0.0.1:{port}"),
            *(
                "--auth-supernode-private-key",
                str(rogue_key.private_key),
                "--port",
                str(free_port()),
                "--max-retries",
                "0",
            ),
        ],
    )

    # Execute: `flwr run` ships the app; the SuperLink starts our ServerApp
    app_dir = write_fab_project(tmp_path / "app")
    result_path = tmp_path / "result.json"
    run_config = (
        f'round-id="deployment-1" vector-length=5 roster-path="{tmp_path / "roster.json"}" '
        f'result-path="{result_path}" stage-timeout=60.0 connect-timeout=60.0'
    )
    cli(processes, "run", str(app_dir), "local", "--run-config", run_config, "--format", "json")
    deadline = time.monotonic() + 75
    while not result_path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)

    # Assert
    assert result_path.exists(), "no result from the ServerApp; SuperLink log:\n" + processes.log("superlink")[-4000:]
    result = json.loads(result_path.read_text())
    assert result["contributors"] == sorted(node_ids)
    assert [int(v) for v in result["total_signed"]] == [sum(col) for col in zip(*vectors.values(), strict=True)]
    assert rogue.wait(timeout=30) != 0
    assert "Failed to activate SuperNode" in processes.log("rogue")
