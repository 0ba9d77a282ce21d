"""compose/compose.yml: valid for Docker Compose with the generated secrets, health-checked, and its commands really start."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port

from keys.cli import write_deployment

COMPOSE = Path(__file__).resolve().parents[1] / "compose" / "compose.yml"
BIN = Path(sys.executable).parent


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return doc


def _compose_cli() -> list[str] | None:
    """``docker compose`` (the plugin) or a standalone v2 ``docker-compose``; None when neither answers."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli in candidates:
        done = subprocess.run([*cli, "version", "--short"], check=False, capture_output=True, text=True, timeout=30)
        if done.returncode == 0 and done.stdout.strip().lstrip("v").startswith("2"):
            return cli
    return None


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    """compose.yml beside a freshly generated ``secrets/`` (as `pcf keys deployment --out compose/secrets`)."""
    folder = tmp_path / "compose"
    folder.mkdir()
    shutil.copy(COMPOSE, folder / "compose.yml")
    write_deployment(folder / "secrets", nodes=3)
    return folder


# --------------------------------------------------------------------------- static checks


def test_every_service_has_a_healthcheck() -> None:
    services = _compose()["services"]

    missing = [name for name, s in services.items() if not s.get("healthcheck", {}).get("test")]
    disabled = [name for name, s in services.items() if s.get("healthcheck", {}).get("disable")]

    assert set(services) == {"superlink", "aggregator", "postgres", "node1", "node2", "node3"}
    assert missing == [] and disabled == []


def test_pcf_services_share_one_image_built_from_the_compose_dockerfile() -> None:
    services = _compose()["services"]

    pcf_services = {name: s for name, s in services.items() if name != "postgres"}

    assert {s["image"] for s in pcf_services.values()} == {"pcf-dataspace:${PCF_IMAGE_TAG:-latest}"}
    assert all(s["build"] == {"context": "..", "dockerfile": "compose/Dockerfile"} for s in pcf_services.values())
    assert (COMPOSE.parent / "Dockerfile").read_text().startswith("# syntax=docker/dockerfile:1\n")
    assert services["postgres"]["image"] == "postgres:16"


def test_dockerfile_copies_every_package_pip_installs_and_no_secrets() -> None:
    import tomllib

    repo = COMPOSE.parents[1]
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    ignore = (COMPOSE.parent / "Dockerfile.dockerignore").read_text().split()

    sources = [s for line in dockerfile.splitlines() if line.startswith("COPY ") for s in line.split()[1:-1]]
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}

    assert all((repo / s).exists() for s in sources), sources
    assert packages <= set(sources)
    assert pyproject["project"]["readme"] in sources
    assert "." not in sources and "**/secrets" in ignore and ".venv" in ignore


def test_superlink_requires_tls_and_supernode_authentication() -> None:
    services = _compose()["services"]

    superlink = services["superlink"]["command"]
    nodes = [services[f"node{i}"]["command"] for i in (1, 2, 3)]

    assert "--insecure" not in superlink
    for flag in ("--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth",
                 "--disable-runtime-dependency-installation"):
        assert flag in superlink
    for command in nodes:
        assert "--insecure" not in command
        assert {"--root-certificates", "--auth-supernode-private-key"} <= set(command)


# --------------------------------------------------------------------------- docker compose config


def test_docker_compose_config_accepts_the_generated_env_files(deployment: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        where = "the docker client has no compose plugin" if shutil.which("docker") else "no docker client"
        pytest.skip(f"no Docker Compose v2: {where}, and no v2 docker-compose on PATH (no engine is needed)")
    compose = ["-f", str(deployment / "compose.yml")]
    secrets = deployment / "secrets"

    full = subprocess.run([*cli, "--env-file", str(secrets / ".env"), *compose, "config", "--format", "json"],
                          check=False, capture_output=True, text=True, timeout=60)
    node_host = subprocess.run([*cli, "--env-file", str(secrets / "node1" / "node.env"), *compose, "config", "node1"],
                               check=False, capture_output=True, text=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCF_", "POSTGRES_"))}
    without_env = subprocess.run([*cli, *compose, "config"], check=False, capture_output=True, text=True, timeout=60, env=env)

    assert full.returncode == 0, full.stderr
    resolved = json.loads(full.stdout)
    token = next(line.split("=", 1)[1] for line in (secrets / ".env").read_text().splitlines()
                 if line.startswith("PCF_AGG_ADMIN_TOKEN="))
    assert resolved["services"]["aggregator"]["environment"]["PCF_AGG_ADMIN_TOKEN"] == token
    assert resolved["services"]["node1"]["user"] == f"{os.getuid()}:{os.getgid()}"
    assert node_host.returncode == 0, node_host.stderr
    assert without_env.returncode != 0 and "Variable not set" in without_env.stderr


# --------------------------------------------------------------------------- the commands really run


def _container_paths(service: dict[str, Any], secrets: Path) -> dict[str, str]:
    """Container path -> host path of every ./secrets bind mount of ``service``."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, dict) and str(v.get("source", "")).startswith("./secrets/"):
            out[v["target"]] = str(secrets / v["source"].removeprefix("./secrets/"))
    return out


def _host_command(command: list[str], paths: dict[str, str], data: Path, options: dict[str, str]) -> list[str]:
    """A compose ``command`` runnable here: container paths mapped, option values overridden."""
    args = [str(BIN / command[0]) if (BIN / command[0]).exists() else command[0]]
    rest = command[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in options and i + 1 < len(rest):
            args += [arg, options[arg]]
            i += 2
            continue
        if arg in paths:
            arg = paths[arg]
        elif arg.startswith("/var/lib/pcf/"):
            arg = str(data / arg.removeprefix("/var/lib/pcf/"))
        args.append(arg)
        i += 1
    return args


def _health_command(service: dict[str, Any], replace: dict[str, str]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python", test
    code = test[-1]
    for old, new in replace.items():
        code = code.replace(old, new)
    return [sys.executable, *test[2:-1], code]


def _wait(command: list[str], env: dict[str, str], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subprocess.run(command, check=False, capture_output=True, env=env, timeout=30).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (so its children stop with it), output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, each in its own session; stopped by process group id afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:  # the whole group: a SuperNode's SuperExec child may outlive it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in started:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@pytest.mark.slow
def test_superlink_and_supernodes_start_with_the_compose_commands_and_only_registered_nodes_join(
    deployment: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    # Prepare: the compose commands with container paths mapped to the generated files, loopback ports.
    if not (BIN / "flower-superlink").exists() or not (BIN / "flwr").exists():
        pytest.skip("flower-superlink / flwr are not installed beside this Python")
    services = _compose()["services"]
    secrets = deployment / "secrets"
    port = free_port()
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    link_paths = _container_paths(services["superlink"], secrets)
    superlink = _host_command(services["superlink"]["command"], link_paths, tmp_path / "superlink",
                              {"--host": "127.0.0.1", "--port": str(port)})
    (tmp_path / "superlink").mkdir()
    cli_home = tmp_path / "flwr-cli"
    cli_home.mkdir()
    config = (secrets / "aggregator" / "flwr-config.toml").read_text()
    (cli_home / "config.toml").write_text(
        config.replace("superlink:9092", f"127.0.0.1:{port}").replace("/secrets/ca.crt", str(secrets / "tls" / "ca.crt"))
    )
    cli_env = {**env, "FLWR_HOME": str(cli_home)}

    # Execute: SuperLink up and healthy; node1 registered and started; node2 started unregistered.
    processes.append(_start(superlink, tmp_path / "superlink.log", {**env, "FLWR_HOME": str(tmp_path / "superlink")}))
    link_health = _health_command(services["superlink"], {"9092": str(port), "/secrets/ca.crt": link_paths["/secrets/ca.crt"]})
    assert _wait(link_health, env, 40), (tmp_path / "superlink.log").read_text()[-2000:]
    registered = subprocess.run([str(BIN / "flwr"), "supernode", "register", str(secrets / "node1" / "supernode.pub")],
                                check=False, capture_output=True, text=True, env=cli_env, timeout=60)
    assert registered.returncode == 0, registered.stdout + registered.stderr
    nodes = {}
    for name in ("node1", "node2"):
        node_port = free_port()
        home = tmp_path / name
        home.mkdir()
        command = _host_command(services[name]["command"], _container_paths(services[name], secrets), home,
                                {"--superlink": f"127.0.0.1:{port}"}) + ["--port", str(node_port)]
        nodes[name] = _start(command, tmp_path / f"{name}.log", {**env, "FLWR_HOME": str(home)})
        processes.append(nodes[name])
        if name == "node1":  # an unregistered node stops its Runtime API as soon as the SuperLink turns it away
            node1_health = _health_command(services[name], {"9094": str(node_port)})
            assert _wait(node1_health, env, 40), (tmp_path / f"{name}.log").read_text()[-2000:]

    online: list[dict[str, Any]] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        listed = subprocess.run([str(BIN / "flwr"), "supernode", "ls", "--format", "json"],
                                check=False, capture_output=True, text=True, env=cli_env, timeout=60)
        if listed.returncode == 0:
            nodes_json = json.loads(listed.stdout[listed.stdout.index("{"):])
            online = [n for n in nodes_json.get("nodes", []) if n["status"] == "online"]
            if online:
                break
        time.sleep(1)
    node2_exit = nodes["node2"].wait(timeout=40)

    # Assert: exactly the registered node is online; the unregistered one was turned away.
    assert len(online) == 1, listed.stdout
    assert node2_exit != 0
    assert "Failed to activate SuperNode" in (tmp_path / "node2.log").read_text()
    assert nodes["node1"].poll() is None
