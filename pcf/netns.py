"""A small test network of Linux network namespaces: one bridge, one namespace and veth pair per host.

Used by the multi-host deployment test (``tests/test_netns.py``): the SuperLink and each node
run in a namespace of their own, so their traffic really crosses an (emulated) network.

The project's own test network is :data:`TEST_SUBNET` (``10.211.77.0/24``). It exists only while
a :class:`Topology` exists, and only here: the bridge in the root namespace holds ``.1``, the hosts
``.10``, ``.11``, ... in the order given. No namespace gets a default route and the bridge is
attached to no physical interface, so nothing sent inside the test network can leave the machine.
Nothing else must ever address it: :func:`create_topology` checks that the root namespace routes
the subnet to the bridge before returning, and :meth:`Topology.destroy` runs only after the
processes that used it are stopped.

Names (``<tag>`` is 6 random hex digits, so concurrent topologies do not collide by name)::

    namespace      pcf-<tag>-<role>     e.g. pcf-3fa9c1-sl, pcf-3fa9c1-n1
    veth (root)    pcf<tag>-<role>      its peer inside the namespace is eth0
    bridge         pcf<tag>-br

Everything needs root (``CAP_NET_ADMIN`` and ``CAP_SYS_ADMIN``) and iproute2's ``ip``;
:func:`netns_unavailable` says why a topology cannot be made here, for a test to skip with.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from pcf.deploy import Placement

__all__ = [
    "TEST_SUBNET",
    "Host",
    "NetnsError",
    "Topology",
    "create_topology",
    "leftovers",
    "netns_unavailable",
    "topology",
]

TEST_SUBNET = "10.211.77.0/24"
"""The project's own test network; only ever used inside namespaces a :class:`Topology` made."""
FIRST_HOST = 10
"""Host number of the first namespace's address (``.1`` is the bridge)."""
_ROLE = re.compile(r"^[a-z][a-z0-9]{0,3}$")  # keeps interface names within the kernel's 15 characters


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message quotes the command and its error output."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class Host:
    """One host of the test network: a namespace with ``eth0`` at ``address``."""

    role: str
    netns: str
    address: str
    veth: str
    """The root namespace's end of the veth pair (a port of the bridge)."""

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns]


@dataclass
class Topology:
    """A bridge and its hosts; :meth:`destroy` removes all of it (idempotent)."""

    tag: str
    subnet: str
    bridge: str
    bridge_address: str
    hosts: dict[str, Host] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    """Names of the namespaces and links this topology made: the only ones :meth:`destroy` removes."""

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def run(self, role: str, args: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside ``role``'s namespace and wait for it (output captured as text)."""
        return subprocess.run([*self.hosts[role].prefix, *args], capture_output=True, text=True, timeout=timeout,
                              check=False)

    def pids(self, role: str) -> list[int]:
        """Process ids running inside ``role``'s namespace."""
        out = _ip("netns", "pids", self.hosts[role].netns, check=False).stdout
        return [int(p) for p in out.split()]

    def placement(self, superlink: str = "sl", nodes: Sequence[str] | None = None) -> Placement:
        """Deployment placement: SuperLink in ``superlink``'s namespace, node ``node<i>`` in ``nodes[i-1]``.

        The aggregator runs in the root namespace on the bridge address, where the SuperLink's
        Control API, the test process and every namespace reach it.
        """
        node_roles = list(nodes) if nodes is not None else [r for r in self.hosts if r != superlink]
        prefixes = {"superlink": tuple(self.hosts[superlink].prefix)}
        for i, role in enumerate(node_roles, start=1):
            prefixes[f"supernode-node{i}"] = tuple(self.hosts[role].prefix)
        return Placement(host=self.bridge_address, superlink_host=self.hosts[superlink].address, prefixes=prefixes)

    def destroy(self) -> list[str]:
        """Remove namespaces, veth pairs and the bridge; returns what could not be removed.

        Processes still inside a namespace (this topology's own: only its users start any there)
        are killed by process id first, so that no namespace is kept alive by them.
        """
        problems: list[str] = []
        for host in self.hosts.values():
            if host.netns in self.created and host.netns in _netns_names():
                for pid in self.pids(host.role):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for host in self.hosts.values():
            if host.veth in self.created and host.veth in _link_names():
                proc = _ip("link", "del", host.veth, check=False)
                if proc.returncode != 0:
                    problems.append(f"veth {host.veth}: {proc.stderr.strip()}")
            if host.netns in self.created and host.netns in _netns_names():
                proc = _ip("netns", "del", host.netns, check=False)
                if proc.returncode != 0:
                    problems.append(f"namespace {host.netns}: {proc.stderr.strip()}")
        if self.bridge in self.created and self.bridge in _link_names():
            proc = _ip("link", "del", self.bridge, check=False)
            if proc.returncode != 0:
                problems.append(f"bridge {self.bridge}: {proc.stderr.strip()}")
        # the kernel may finish removing a namespace (and its end of the veth pair) a little later
        deadline = time.monotonic() + 10
        while self._remaining() and time.monotonic() < deadline:
            time.sleep(0.1)
        problems += [f"still present: {name}" for name in self._remaining()]
        self.created.clear()
        return problems

    def _remaining(self) -> list[str]:
        return sorted(self.created & (_netns_names() | _link_names()))


def _netns_names() -> set[str]:
    out = _ip("netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _link_names() -> set[str]:
    out = _ip("-o", "link", "show", check=False).stdout
    # "7: pcf3fa9c1-sl@if2: <...>" -> "pcf3fa9c1-sl"
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def leftovers(tag: str) -> list[str]:
    """Namespaces and links of the topology ``tag`` that still exist (empty once it is destroyed)."""
    return sorted(n for n in _netns_names() | _link_names() if n.startswith((f"pcf-{tag}-", f"pcf{tag}-")))


def netns_unavailable() -> str | None:
    """Why no topology can be made here (for ``pytest.skip``), or ``None`` when one can.

    Checks root, iproute2's ``ip``, and then really adds a namespace with a veth pair into it,
    runs a command inside, and removes both: containers often refuse one of those steps.
    """
    if os.geteuid() != 0:
        return f"network namespaces need root; running as uid {os.geteuid()}"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    tag = secrets.token_hex(3)
    ns, veth = f"pcf-{tag}-probe", f"pcf{tag}-pr"
    try:
        for args in (("netns", "add", ns), ("link", "add", veth, "type", "veth", "peer", "name", "eth0",
                                            "netns", ns), ("netns", "exec", ns, "ip", "link", "set", "lo", "up")):
            proc = _ip(*args, check=False)
            if proc.returncode != 0:
                return f"`ip {' '.join(args)}` refused here: {proc.stderr.strip() or proc.returncode}"
        return None
    finally:
        _ip("link", "del", veth, check=False)
        _ip("netns", "del", ns, check=False)


def create_topology(roles: Sequence[str], subnet: str = TEST_SUBNET, tag: str | None = None) -> Topology:
    """Bridge ``pcf<tag>-br`` at ``.1`` of ``subnet``, and per role a namespace at ``.10``, ``.11``, ...

    Parameters
    ----------
    roles
        Short host names (a lower-case letter, then up to 3 letters or digits; unique), e.g.
        ``["sl", "n1", "n2", "n3"]``.
    subnet
        An IPv4 /24 that is the project's own test network (default :data:`TEST_SUBNET`).
    tag
        Name tag (default: 6 random hex digits).

    Returns
    -------
    Topology
        Loopback and ``eth0`` up in every namespace. On any failure, what was made is removed
        again and :class:`NetnsError` raised.
    """
    net = ipaddress.ip_network(subnet)
    if net.version != 4 or net.prefixlen != 24:
        raise ValueError(f"subnet {subnet!r}; accepted: an IPv4 /24 such as {TEST_SUBNET}")
    bad = [r for r in roles if not _ROLE.match(r)]
    if bad or len(set(roles)) != len(roles) or not roles:
        raise ValueError(f"roles {list(roles)!r}; accepted: unique names of a lower-case letter and up to 3 "
                         "more letters or digits, at least one")
    if len(roles) > 254 - FIRST_HOST:
        raise ValueError(f"{len(roles)} roles; accepted: at most {254 - FIRST_HOST}")
    tag = tag or secrets.token_hex(3)
    addr = [str(a) for a in net.hosts()]  # .1 ... .254
    topo = Topology(tag=tag, subnet=subnet, bridge=f"pcf{tag}-br", bridge_address=addr[0])
    try:
        _ip("link", "add", topo.bridge, "type", "bridge")
        topo.created.add(topo.bridge)
        _ip("addr", "add", f"{topo.bridge_address}/24", "dev", topo.bridge)
        _ip("link", "set", topo.bridge, "up")
        for i, role in enumerate(roles):
            host = Host(role=role, netns=f"pcf-{tag}-{role}", address=addr[FIRST_HOST - 1 + i], veth=f"pcf{tag}-{role}")
            topo.hosts[role] = host
            _ip("netns", "add", host.netns)
            topo.created.add(host.netns)
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            topo.created.add(host.veth)
            _ip("link", "set", host.veth, "master", topo.bridge, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
        for host in topo.hosts.values():  # the root namespace must send the subnet nowhere but the bridge
            route = _ip("route", "get", host.address).stdout
            if f"dev {topo.bridge} " not in route + " ":
                raise NetnsError(f"{host.address} is routed as {route.strip()!r}, not to bridge {topo.bridge}: "
                                 f"is {subnet} in use on this machine?")
        return topo
    except BaseException:
        topo.destroy()
        raise


@contextmanager
def topology(roles: Sequence[str], subnet: str = TEST_SUBNET) -> Iterator[Topology]:
    """:func:`create_topology` for the ``with`` block; destroyed at its end, on failure too.

    Raises :class:`NetnsError` after the block if anything of the topology could not be removed.
    """
    topo = create_topology(roles, subnet)
    problems: list[str] = []
    try:
        yield topo
    finally:
        problems = topo.destroy()
    if problems:
        raise NetnsError(f"topology {topo.tag} not fully removed: {'; '.join(problems)}")
