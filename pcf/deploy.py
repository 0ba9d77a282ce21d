"""A whole deployment as local processes: SuperLink, aggregator service and enterprise nodes.

Used by ``pcf demo`` and by the end-to-end tests. Every process runs on a loopback port it picked
(or on the host addresses given), in its own process group, with its log in ``root/logs``; all of
them are stopped by process id, children included, by :meth:`Deployment.stop`.

TLS is on between SuperNodes and the SuperLink (a CA and server certificate from
:mod:`keys.tls`) and the SuperLink authenticates SuperNodes by their registered public keys. The
aggregator API serves HTTPS with its own certificate from the same CA; clients pin that CA
(:meth:`Deployment.ssl_context`) and the aggregator's identity key (:meth:`Deployment.aggregator_public_key`). Each
node's SuperNode runs under ``pcf node supernode`` (:mod:`node.clientapp_runner`): only the node's
installed ClientApp runs, and only for the FAB its installed package builds.

A :class:`Placement` puts processes on other hosts of a test network: a command prefix per process
(``ip netns exec <namespace>``, see :mod:`pcf.netns`) and the address the SuperLink binds.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

from keys.identity import (
    generate_identity,
    load_private_key,
    public_key_b64,
    save_private_key,
)
from keys.tls import client_context, generate_supernode_auth_keys, write_tls_files

__all__ = ["BIN", "Deployment", "DeploymentError", "NodeHandle", "Placement", "free_port", "wait_for_port"]

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


class DeploymentError(RuntimeError):
    """A process failed to start or to become ready; the message names it and quotes its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.3).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass(frozen=True)
class Placement:
    """Where a deployment's processes run; the default is everything on loopback of this host.

    ``host`` is an address of this (root) namespace: the aggregator binds it and local ports are
    picked on it. ``superlink_host`` is the address the SuperLink binds and everyone reaches it by
    (default ``host``); it goes into the SuperLink certificate's SANs. ``prefixes`` maps a process
    name (``superlink``, ``aggregator``, ``supernode-<node>``) to the command prefix it runs under.
    """

    host: str = "127.0.0.1"
    superlink_host: str | None = None
    prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class NodeHandle:
    """One enterprise node: its home (store, identity), SuperNode auth keys and process."""

    name: str
    home: Path
    identity_path: Path
    identity_public: str
    supernode_private: Path
    supernode_public: Path

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.home / 'node.db'}"

    def env(self) -> dict[str, str]:
        return {"PCF_HOME": str(self.home), "PCF_DB": self.db_url}


@dataclass
class Deployment:
    """Processes of one local deployment under ``root``."""

    root: Path
    host: str = "127.0.0.1"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    nodes: dict[str, NodeHandle] = field(default_factory=dict)
    superlink_port: int | None = None
    aggregator_url: str | None = None
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    pact_client_id: str = "demo-client"
    pact_client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    tls_dir: Path = Path()
    """CA, SuperLink and aggregator certificates (``ca.crt``, ``server.pem``/``.key``, ``aggregator.pem``/``.key``);
    default ``root/tls``, made when absent."""
    aggregator_key: Path | None = None
    """The aggregator's Ed25519 identity key; made when absent."""
    superlink_host: str | None = None
    """Address the SuperLink binds and is reached by; default ``host``."""
    prefixes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Command prefix per process name (``superlink``, ``aggregator``, ``supernode-<node>``), e.g.
    ``["ip", "netns", "exec", "pcf-3fa9c1-sl"]``; a process without one runs as is."""

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        if self.tls_dir == Path():
            self.tls_dir = self.root / "tls"
        self.flwr_home = self.root / "flwr-home"
        self.flwr_home.mkdir(exist_ok=True)

    # -- environment ---------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "FLWR_HOME": str(self.flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            # The SuperLink starts its SuperExec from PATH; apps import this repository's packages.
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            # How often a SuperExec (the SuperLink's, for the ServerApp; a stock SuperNode's, for a
            # ClientApp) looks for a task to start: Flower's one supported latency knob, default 1 s.
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
        })
        return env

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with open(self.root / "logs" / f"{name}.log", "ab") as log:
            args = [*self.prefixes.get(name, ()), *args]
            proc = subprocess.Popen(args, cwd=cwd or self.root, env=env or self.base_env(), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = proc
        return proc

    def _fail(self, name: str, what: str) -> DeploymentError:
        tail = "\n".join(self.log(name).splitlines()[-25:])
        return DeploymentError(f"{name}: {what}\n--- last lines of {name}.log ---\n{tail}")

    # -- SuperLink -----------------------------------------------------------------------------

    def start_superlink(self, port: int | None = None) -> int:
        """TLS SuperLink with SuperNode authentication and a database file; returns its port.

        It binds ``superlink_host`` (default ``host``); with a prefix (another namespace) the port is
        only picked here, free in that namespace since nothing else listens there.
        """
        sl_host = self.superlink_address_host
        self.ensure_tls()
        port = port or free_port(self.host)
        (self.root / "superlink").mkdir(exist_ok=True)
        self.start("superlink", [
            str(BIN / "flower-superlink"),
            "--ssl-ca-certfile", str(self.tls_dir / "ca.crt"),
            "--ssl-certfile", str(self.tls_dir / "server.pem"),
            "--ssl-keyfile", str(self.tls_dir / "server.key"),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--database", str(self.root / "superlink" / "state.db"),
            "--host", sl_host, "--port", str(port),
        ])
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "{sl_host}:{port}"\n'
            f'root-certificates = "{self.tls_dir / "ca.crt"}"\n')
        if not wait_for_port(port, 60, sl_host) or self.processes["superlink"].poll() is not None:
            raise self._fail("superlink", f"did not listen on {sl_host}:{port}")
        self.superlink_port = port
        return port

    @property
    def superlink_address_host(self) -> str:
        return self.superlink_host or self.host

    # -- TLS -----------------------------------------------------------------------------------

    def ensure_tls(self) -> None:
        """Write the CA, the SuperLink's and the aggregator's certificates into ``tls_dir`` unless there."""
        if not (self.tls_dir / "ca.crt").exists():
            hosts = sorted({"localhost", "127.0.0.1", self.host, self.superlink_address_host})
            write_tls_files(self.tls_dir, hosts=hosts, aggregator_hosts=[self.host])
        if not (self.tls_dir / "aggregator.pem").exists():
            raise DeploymentError(
                f"{self.tls_dir} has a CA but no aggregator.pem/aggregator.key; write them with the same CA "
                "(`pcf keys deployment`, or `pcf keys tls --aggregator-host HOST`)")

    @property
    def aggregator_ca(self) -> Path:
        """The CA certificate clients pin for the aggregator API (and the SuperLink)."""
        return self.tls_dir / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this deployment's CA (what a node pins at enrolment)."""
        return client_context(self.aggregator_ca.read_text(encoding="ascii"))

    def aggregator_public_key(self) -> str:
        """The aggregator's identity public key (what a node pins at enrolment with ``--aggregator-key``)."""
        return public_key_b64(load_private_key(self.aggregator_key_path))

    @property
    def aggregator_key_path(self) -> Path:
        return self.aggregator_key or self.root / "aggregator" / "identity.pem"

    # -- aggregator ----------------------------------------------------------------------------

    def aggregator_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        home = self.root / "aggregator"
        home.mkdir(exist_ok=True)
        key_path = self.aggregator_key_path
        if not key_path.exists():
            save_private_key(generate_identity(), key_path)
        self.ensure_tls()
        env = self.base_env()
        env.update({
            "PCF_AGG_HOME": str(home),
            "PCF_AGG_ADMIN_TOKEN": self.admin_token,
            "PCF_AGG_IDENTITY_KEY_PATH": str(key_path),
            "PCF_AGG_PACT_CLIENT_ID": self.pact_client_id,
            "PCF_AGG_PACT_CLIENT_SECRET": self.pact_client_secret,
            "PCF_AGG_TLS_CERTFILE": str(self.tls_dir / "aggregator.pem"),
            "PCF_AGG_TLS_KEYFILE": str(self.tls_dir / "aggregator.key"),
        })
        if self.superlink_port is not None:
            env.update({
                "PCF_AGG_SUPERLINK_ADDRESS": f"{self.superlink_address_host}:{self.superlink_port}",
                "PCF_AGG_SUPERLINK_ROOT_CERT": str(self.tls_dir / "ca.crt"),
                "PCF_AGG_FLWR_HOME": str(self.flwr_home),
            })
        env.update(extra or {})
        return env

    def start_aggregator(self, extra_env: dict[str, str] | None = None, port: int | None = None) -> str:
        """The aggregator service under uvicorn over HTTPS; returns its base URL once /health answers.

        Proxy headers are off, as ``pcf agg serve`` runs it: the app's TLS check reads the connection.
        """
        port = port or free_port(self.host)
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"https://{host}:{port}"
        env = self.aggregator_env({"PCF_AGG_PUBLIC_BASE_URL": url, **(extra_env or {})})
        self.start("aggregator", [sys.executable, "-m", "uvicorn", "aggregator.app:app_from_env", "--factory",
                                  "--host", self.host, "--port", str(port), "--log-level", "warning",
                                  "--ssl-certfile", env["PCF_AGG_TLS_CERTFILE"],
                                  "--ssl-keyfile", env["PCF_AGG_TLS_KEYFILE"], "--no-proxy-headers"], env=env)
        context = self.ssl_context()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.processes["aggregator"].poll() is not None:
                raise self._fail("aggregator", "exited during start-up")
            try:
                if httpx.get(f"{url}/health", timeout=1.0, verify=context).status_code == 200:
                    self.aggregator_url = url
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise self._fail("aggregator", f"did not answer {url}/health within 60 s")

    # -- nodes ---------------------------------------------------------------------------------

    def add_node(self, name: str, keys_dir: Path | None = None) -> NodeHandle:
        """A node home with an Ed25519 identity and SuperNode authentication keys.

        With ``keys_dir`` (a ``node<i>`` folder written by ``pcf keys deployment``) the node uses
        those keys; otherwise new ones are made.
        """
        home = self.root / "nodes" / name
        home.mkdir(parents=True, exist_ok=True)
        if keys_dir is not None:
            key = load_private_key(keys_dir / "identity.key")
            save_private_key(key, home / "identity.pem", overwrite=True)
            private, public = keys_dir / "supernode.key", keys_dir / "supernode.pub"
        else:
            key = generate_identity()
            save_private_key(key, home / "identity.pem")
            auth = generate_supernode_auth_keys(home / "supernode", name)
            private, public = Path(auth.private_key), Path(auth.public_key)
        node = NodeHandle(name=name, home=home, identity_path=home / "identity.pem",
                          identity_public=public_key_b64(key), supernode_private=private, supernode_public=public)
        self.nodes[name] = node
        return node

    def start_supernode(self, node: NodeHandle, superlink_host: str | None = None, *,
                        approved_code_only: bool = True) -> subprocess.Popen[bytes]:
        """The node's SuperNode: ``pcf node supernode``, which runs only the node's installed ClientApp.

        ``approved_code_only=False`` starts a stock ``flower-supernode`` instead, which runs whatever
        ClientApp the FAB names: only the canary test's plaintext control does that.
        """
        if self.superlink_port is None:
            raise DeploymentError("start the SuperLink first")
        env = self.base_env()
        env.update(node.env())
        launcher = [str(BIN / "pcf"), "node", "supernode"] if approved_code_only else [str(BIN / "flower-supernode")]
        proc = self.start(f"supernode-{node.name}", [
            *launcher,
            "--root-certificates", str(self.tls_dir / "ca.crt"),
            "--superlink", f"{superlink_host or self.superlink_address_host}:{self.superlink_port}",
            "--auth-supernode-private-key", str(node.supernode_private),
            "--node-config", f'pcf-home="{node.home}"',
            "--port", str(free_port(self.host)),
        ], env=env)
        return proc

    # -- stopping ------------------------------------------------------------------------------

    def stop_process(self, name: str, timeout: float = 15) -> None:
        """Stop one process by id, gracefully first, then what is left of its group; e.g. to restart a SuperNode.

        SIGTERM goes to the leader alone (``pcf node supernode`` passes it on to its SuperNode), so a
        SuperNode shuts down once, cleanly.
        """
        proc = self.processes.pop(name)
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def running(self) -> list[int]:
        return [p.pid for p in self.processes.values() if p.poll() is None]

    def stop(self) -> None:
        """Stop every process this deployment started (each leads its own process group)."""
        for proc in reversed(list(self.processes.values())):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
            # the group may still hold children (SuperExec, app processes) after its leader exited
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
