"""A round across network namespaces: SuperLink and each node on a host of their own, no container engine.

The hosts live on the project's own test network (:data:`pcf.netns.TEST_SUBNET`), which exists
only inside the namespaces these tests make and is removed at their end, failure or not. Skipped
where namespaces cannot be made (not root, no ``ip``, or ``ip netns add`` refused).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from pcf.netns import (
    FIRST_HOST,
    TEST_SUBNET,
    Topology,
    create_topology,
    leftovers,
    netns_unavailable,
    topology,
)

PROTOCOL: Literal["secagg", "paillier"] = "secagg"
NODES = 3

# Listens on (host, port) inside a namespace, prints the first peer's address, then exits.
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); s.settimeout(20)
print("listening", flush=True)
c, peer = s.accept(); print(peer[0], flush=True); c.close()
"""
# Connects to (host, port); prints "connected" or the error's name.
CLIENT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close(); print("connected")
except OSError as e:
    print(type(e).__name__)
"""


@pytest.fixture(scope="module")
def netns_ok() -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")


def _serve(topo: Topology, role: str, host: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*topo[role].prefix, sys.executable, "-c", SERVER, host, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "listening", proc.stderr
    return proc


def _connect(topo: Topology, role: str, host: str, port: int) -> str:
    return topo.run(role, [sys.executable, "-c", CLIENT, host, str(port)]).stdout.strip()


def test_create_topology_refuses_bad_roles_and_subnets_before_touching_the_network() -> None:
    with pytest.raises(ValueError, match="accepted"):
        create_topology(["SuperLink"])
    with pytest.raises(ValueError, match="accepted"):
        create_topology(["a", "a"])
    with pytest.raises(ValueError, match="accepted"):
        create_topology(["a"], subnet="10.211.0.0/16")


def test_hosts_reach_each_other_by_address_and_not_each_others_loopback(netns_ok: None) -> None:
    with topology(["a", "b"]) as topo:
        a, b = topo["a"], topo["b"]
        assert a.address == TEST_SUBNET.replace(".0/24", f".{FIRST_HOST}")
        server = _serve(topo, "a", a.address, 7000)
        try:
            assert _connect(topo, "b", a.address, 7000) == "connected"
            out, _ = server.communicate(timeout=10)
        finally:
            server.kill()
            server.communicate()
        assert out.strip() == b.address  # the connection came from b's namespace

        local = _serve(topo, "a", "127.0.0.1", 7001)  # a's loopback is a's alone
        try:
            assert _connect(topo, "b", "127.0.0.1", 7001) == "ConnectionRefusedError"
            assert _connect(topo, "b", a.address, 7001) == "ConnectionRefusedError"
        finally:
            local.kill()
            local.communicate()
        assert "<LOOPBACK,UP" in topo.run("a", ["ip", "-o", "link", "show", "lo"]).stdout


def test_topology_is_removed_with_its_processes_when_the_block_fails(netns_ok: None) -> None:
    tag = ""
    with pytest.raises(RuntimeError, match="boom"), topology(["a", "b"]) as topo:
        tag = topo.tag
        sleeper = subprocess.Popen([*topo["a"].prefix, "sleep", "60"])
        assert leftovers(tag)  # namespaces, veths and bridge exist
        raise RuntimeError("boom")
    assert sleeper.wait(timeout=10) != 0  # killed with its namespace, by process id
    assert leftovers(tag) == []


@dataclass
class Sampler:
    """Samples, while the round runs, who is connected to the SuperLink and what runs in each namespace."""

    topo: Topology
    superlink: str
    peers: set[str] = field(default_factory=set)
    programs: dict[str, set[str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        sl = self.topo[self.superlink].address
        for line in self.topo.run(self.superlink, ["ss", "-tanH"]).stdout.splitlines():
            cols = line.split()  # state recv-q send-q local peer
            if len(cols) >= 5 and cols[0] != "LISTEN" and cols[3].rsplit(":", 1)[0] == sl:
                self.peers.add(cols[4].rsplit(":", 1)[0])
        for role in self.topo.hosts:
            for pid in self.topo.pids(role):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                names = {Path(c.decode(errors="replace")).name for c in cmd[:2]}
                self.programs.setdefault(role, set()).update(n for n in names if n.startswith("flower-"))

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            self.sample()


@pytest.mark.slow
def test_round_across_namespaces_publishes_the_factor_from_every_node_and_leaves_no_namespace(
        netns_ok: None, tmp_path: Path) -> None:
    from pcf.demo import run_demo

    with topology(["sl", *(f"n{i}" for i in range(1, NODES + 1))]) as topo, Sampler(topo, "sl").running() as sampler:
        result = run_demo(nodes=NODES, protocol=PROTOCOL, workdir=tmp_path / "demo", quiet=True,
                          placement=topo.placement())

    assert result.factor["n_participants"] == NODES
    assert float(result.factor["value"]) == pytest.approx(result.plaintext["weighted_mean"], abs=0.05)
    assert result.verify["ok"] is True
    assert result.api_url.startswith(f"https://{topo.bridge_address}:")
    # every SuperNode ran in its own namespace and reached the SuperLink from that namespace's address
    assert "flower-superlink" in sampler.programs.get("sl", set()), sampler.programs
    for i in range(1, NODES + 1):
        assert "flower-supernode" in sampler.programs.get(f"n{i}", set()), sampler.programs
    assert {topo[f"n{i}"].address for i in range(1, NODES + 1)} <= sampler.peers, sampler.peers
    assert leftovers(topo.tag) == []  # no namespace, veth or bridge left


def test_netns_unavailable_names_why_for_the_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert netns_unavailable() == "network namespaces need root; running as uid 1000"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert "`ip` is not installed" in str(netns_unavailable())
    monkeypatch.setattr("shutil.which", lambda name: "/usr/sbin/ip")
    calls: list[tuple[str, ...]] = []

    def refused(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(["ip", *args], 2, "", "mount --make-shared /run/netns failed: "
                                                                  "Operation not permitted")
    monkeypatch.setattr("pcf.netns._ip", refused)
    reason = str(netns_unavailable())
    assert reason.startswith("`ip netns add pcf-") and "Operation not permitted" in reason
    assert calls[0][:2] == ("netns", "add") and calls[-1][:2] == ("netns", "del")  # cleaned up all the same
