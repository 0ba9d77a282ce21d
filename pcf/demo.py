"""`pcf demo`: the whole product on one machine, as real processes, in one command.

Steps: keys (``pcf keys deployment``), a TLS SuperLink with SuperNode authentication, the
aggregator service, N enterprise nodes (each its own home and SQLite store, loaded with one
sample firm and the shared background data), enrolment and approval, a ``secagg`` round over
the SuperLink (or a ``paillier`` round with two key custodians), publication, the factor as a
table, and ``pcf verify`` on it. Everything started is stopped by process id at the end (or at
SIGINT / SIGTERM with ``--keep-running``).
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from pcf.deploy import Deployment, NodeHandle, Placement

__all__ = ["DemoError", "DemoResult", "demo_cmd", "plaintext_reference", "run_demo"]

EXIT_DEMO = 40
# The demo's two custodians (the association and the national database) unlock their shares with
# these; in a deployment each custodian chooses its own and never shares it.
CUSTODIAN_PASSWORDS = ("association-custodian", "national-db-custodian")
T = TypeVar("T")


class DemoError(RuntimeError):
    def __init__(self, step: str, reason: str):
        self.step = step
        super().__init__(f"step '{step}' failed: {reason}")


@dataclass
class DemoResult:
    factor: dict[str, Any]
    api_url: str
    pact: dict[str, str]
    verify: dict[str, Any]
    plaintext: dict[str, float]
    workdir: str
    pids: list[int] = field(default_factory=list)
    ca_cert: str = ""
    """The CA the aggregator's HTTPS certificate chains to (``curl --cacert``, ``pcf node enroll --ca``)."""

    def to_json(self) -> dict[str, Any]:
        f = self.factor
        return {
            "factor": {"factor_id": f["factor_id"], "value": f["value"], "unit": f["unit"],
                       "n_participants": f["n_participants"], "version": f["version"],
                       "name": f.get("name"), "region": f.get("region"), "gwp_set": f.get("gwp_set")},
            "api_url": self.api_url,
            "pact": self.pact,
            "verify": self.verify,
            "plaintext_check": self.plaintext,
            "workdir": self.workdir,
            "ca_cert": self.ca_cert,
        }


class _Progress:
    def __init__(self, console: Console, quiet: bool):
        self.console = console
        self.quiet = quiet

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        if not self.quiet:
            self.console.print(f"[bold cyan]●[/bold cyan] {name} ...", highlight=False)
        try:
            yield
        except DemoError:
            raise
        except Exception as exc:  # every failure is reported with the step it happened in
            raise DemoError(name, f"{type(exc).__name__}: {exc}") from exc
        if not self.quiet:
            self.console.print(f"  [green]done[/green] in {time.monotonic() - start:.1f} s", highlight=False)


def _admin(url: str, token: str, verify: ssl.SSLContext) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0, verify=verify,
                        trust_env=False)


def _check(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 400:
        raise RuntimeError(f"{what}: HTTP {resp.status_code} {resp.text[:400]}")
    return resp.json()


def _wait(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got is not None:
            return got
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def plaintext_reference(node_previews: list[dict[str, Any]]) -> dict[str, float]:
    """The factor computed in plaintext from the firms' own footprints (the check the demo prints)."""
    w = [p["weight"] for p in node_previews]
    f = [p["footprint_total"] for p in node_previews]
    return {"weighted_mean": sum(a * b for a, b in zip(w, f, strict=True)) / sum(w),
            "mean": sum(f) / len(f), "n": float(len(f))}


def run_demo(
    nodes: int = 5,
    protocol: Literal["secagg", "paillier"] = "secagg",
    industry: str = "aluminium",
    workdir: Path | None = None,
    keep_running: bool = False,
    quiet: bool = False,
    on_published: Callable[[DemoResult], None] | None = None,
    console: Console | None = None,
    placement: Placement | None = None,
) -> DemoResult:
    """Run the demo; returns the published factor, the URLs and the verification report.

    With ``keep_running`` the services stay up until SIGINT / SIGTERM (``on_published`` is
    called as soon as the factor is published, before waiting). ``placement`` runs the processes
    elsewhere (e.g. in network namespaces, :meth:`pcf.netns.Topology.placement`); default: all on
    loopback.
    """
    from keys.cli import write_deployment
    from node import rounds as node_rounds
    from node.client import AggregatorClient
    from node.service import import_paths
    from node.store import NodeStore
    from pcf.samples import background_files, firm_files, firm_uscc, sample_spec
    from pcf.samples import industry as industry_of

    console = console or Console(stderr=True)
    progress = _Progress(console, quiet)
    try:
        industry_of(industry)
    except KeyError as exc:
        raise DemoError("arguments", str(exc.args[0])) from None
    firms = firm_files(industry)
    if not 3 <= nodes <= len(firms):
        raise DemoError("arguments", f"--nodes {nodes}: the {industry} sample has {len(firms)} firms; "
                                     f"accepted: 3..{len(firms)} (3 is the minimum a round publishes with)")
    root = workdir or Path(tempfile.mkdtemp(prefix="pcf-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    keys_dir = root / "keys"
    for stale in ("keys", "custodians", "nodes", "aggregator", "superlink", "flwr-home", "logs", "authority"):
        shutil.rmtree(root / stale, ignore_errors=True)  # a rerun in the same --workdir starts afresh
    deployment: Deployment | None = None
    admin: httpx.Client | None = None
    node_http: httpx.Client | None = None  # the nodes' side of the demo (trusting the pinned CA); closed at the end
    try:
        with progress.step(f"keys: TLS, aggregator and {nodes} node identities (pcf keys deployment)"):
            where = placement or Placement()
            sl_host = where.superlink_host or where.host
            sl_names = tuple(dict.fromkeys((sl_host, "127.0.0.1", "localhost")))  # nodes use the first
            write_deployment(keys_dir, nodes=nodes, superlink_hosts=sl_names, aggregator_host=where.host)
            env_file = dict(line.split("=", 1) for line in (keys_dir / ".env").read_text().splitlines()
                            if "=" in line and not line.startswith("#"))
            deployment = Deployment(root, host=where.host, superlink_host=where.superlink_host,
                                    prefixes=dict(where.prefixes), tls_dir=keys_dir / "tls",
                                    aggregator_key=keys_dir / "aggregator" / "identity.key",
                                    admin_token=env_file.get("PCF_AGG_ADMIN_TOKEN", "").strip('"'),
                                    pact_client_id=env_file.get("PCF_AGG_PACT_CLIENT_ID", "demo").strip('"'),
                                    pact_client_secret=env_file.get("PCF_AGG_PACT_CLIENT_SECRET", "").strip('"'))
        d = deployment
        with progress.step("SuperLink (TLS, SuperNode authentication)"):
            d.start_superlink()
        extra: dict[str, str] = {}
        custodian_dir = root / "custodians"
        paillier_key_id: str | None = None  # what the custodians publish and every firm pins
        if protocol == "paillier":
            with progress.step("key ceremony: Paillier key split between 2 custodians"):
                from custodian.ceremony import custodian_init

                paillier_key_id = custodian_init(custodian_dir, 2, 2048, passwords=list(CUSTODIAN_PASSWORDS)).key_id
                extra["PCF_AGG_PAILLIER_PUBLIC_KEY_PATH"] = str(custodian_dir / "paillier_public_key.json")
        with progress.step("membership authority (the national database's role): signing key"):
            authority = _DemoAuthority(root / "authority")
            extra["PCF_AGG_AUTHORITY_PUBLIC_KEY"] = authority.public_key  # enrolment needs its certificate
        with progress.step("aggregator service (uvicorn, HTTPS)"):
            api = d.start_aggregator(extra)
        # What the association publishes out of band and each firm pins at enrolment (--ca, --aggregator-key).
        tls_context = d.ssl_context()
        ca_pem = d.aggregator_ca.read_text(encoding="ascii")
        aggregator_public_key = d.aggregator_public_key()
        admin = _admin(api, d.admin_token, tls_context)
        node_http = httpx.Client(timeout=30.0, verify=tls_context, trust_env=False)
        handles: list[NodeHandle] = []
        previews: list[dict[str, Any]] = []
        with progress.step(f"{nodes} enterprise nodes: import data, enrol"):
            for i in range(1, nodes + 1):
                node = d.add_node(f"node{i}", keys_dir / f"node{i}")
                handles.append(node)
                store = NodeStore(node.db_url)
                try:
                    import_paths(store, background_files() + [firms[i - 1]])
                    client = AggregatorClient(store, node.home, api, http=node_http, ca_pem=ca_pem)
                    firm = next(p for p in store.bundle().processes.values() if p.annual_production)
                    names = (firm.name.get("zh", firm.display_name()), firm.display_name())
                    # the authority certifies the firm's key against its USCC; the firm pins the authority's key
                    cert = authority.certify(firm_uscc(industry, i - 1), *names, client.key)
                    client.enroll(*names, node.supernode_public.read_text().strip(), aggregator_public_key,
                                  certificate=cert, authority_key=authority.public_key)
                    if paillier_key_id is not None:  # pcf node enroll --paillier-key, as the custodians published it
                        from node.contribute import pin_paillier_key

                        pin_paillier_key(store, paillier_key_id)
                finally:
                    store.close()
        with progress.step("association approves the members (SuperNodes registered with the SuperLink)"):
            for m in _check(admin.get("/api/v1/members", params={"status": "pending"}), "listing members"):
                _check(admin.post(f"/api/v1/members/{m['id']}/approve"), f"approving member {m['id']}")
        with progress.step("SuperNodes connect (TLS, authenticated)"):
            for node in handles:
                d.start_supernode(node)
        with progress.step(f"round on the {industry} sample: create and open ({protocol})"):
            spec = sample_spec(industry, n_firms=nodes, protocol=protocol, paillier_key_id=paillier_key_id)
            _check(admin.post("/api/v1/rounds", content=spec.model_dump_json(),
                              headers={"Content-Type": "application/json"}), "creating the round")
            _check(admin.post(f"/api/v1/rounds/{spec.round_id}/open"), "opening the round")
        with progress.step("each firm previews its vector in plaintext on its own node and approves"):
            for node in handles:
                store = NodeStore(node.db_url)
                try:
                    client = AggregatorClient(store, node.home, api, http=node_http)
                    if spec.round_id not in client.fetch_invitations():
                        raise RuntimeError(f"{node.name} got no verified invitation to {spec.round_id}")
                    firm = next(p for p in store.bundle().processes.values() if p.annual_production)
                    p = node_rounds.approve(store, spec.round_id, firm.uuid, confirm_zeros=True, approved_by="demo")
                    previews.append(p.to_dict())
                    if protocol == "paillier":
                        client.contribute_paillier(spec.round_id)
                finally:
                    store.close()
        with progress.step(f"secure aggregation ({protocol})"):
            _check(admin.post(f"/api/v1/rounds/{spec.round_id}/run"), "running the round")
            if protocol == "paillier":
                # one encrypted sum per disclosure stage: the custodians decrypt the stage the log shows the
                # round waiting for, then every firm posts the next stage from the aggregator's signed context
                while True:
                    _decrypt_with_custodians(admin, spec.round_id, custodian_dir, keys_dir, spec.min_participants,
                                             authority.public_key)
                    state = _check(admin.get(f"/api/v1/rounds/{spec.round_id}"), "round status")["state"]
                    if state != "aggregating":
                        break
                    for node in handles:
                        store = NodeStore(node.db_url)
                        try:
                            AggregatorClient(store, node.home, api, http=node_http).contribute_paillier(spec.round_id)
                        finally:
                            store.close()

            def finished() -> dict[str, Any] | None:
                r = _check(admin.get(f"/api/v1/rounds/{spec.round_id}"), "round status")
                return r if r["state"] in ("published", "suppressed", "aborted") else None

            final = _wait("publication", finished, timeout=240)
            if final["state"] != "published":
                raise RuntimeError(f"round ended {final['state']}: {final.get('decision')}")
        with progress.step("published factor from the factor API"):
            listing = _check(node_http.get(f"{api}/api/v1/factors",
                                           params={"industry": spec.product.classification_code}), "listing factors")
            summary = next(f for f in listing if f.get("n_participants") == nodes) if listing else None
            if summary is None:
                raise RuntimeError(f"no factor published for industry {spec.product.classification_code}")
            full = _check(node_http.get(f"{api}/api/v1/factors/{summary['factor_id']}"), "reading factor")
            factor = {**full, **summary}
        with progress.step("pcf verify: hash chain, signatures, recomputation"):
            from pcf.verify import verify_factor

            report = verify_factor(factor["factor_id"], api, aggregator_public_key=aggregator_public_key,
                                   client=node_http)
            verify = report.model_dump(mode="json") if hasattr(report, "model_dump") else dict(vars(report))
            if not verify.get("ok"):
                raise RuntimeError(f"verification failed: {verify}")
        result = DemoResult(
            factor=factor, api_url=f"{api}/api/v1", verify=verify, plaintext=plaintext_reference(previews),
            pact={"base_url": api, "token_url": f"{api}/auth/token", "client_id": d.pact_client_id,
                  "client_secret": d.pact_client_secret},
            workdir=str(root), pids=d.running(), ca_cert=str(d.aggregator_ca),
        )
        if keep_running:
            if on_published:
                on_published(result)
            _wait_for_signal()
        return result
    finally:
        if node_http is not None:
            node_http.close()
        if admin is not None:
            admin.close()
        if deployment is not None:
            deployment.stop()


class _DemoAuthority:
    """The membership authority as the demo plays it: ``pcf authority init`` and ``certify``, in process."""

    def __init__(self, home: Path):
        from authority.issuer import load_or_create_key
        from authority.store import AuthorityStore
        from keys.identity import public_key_b64

        self.key, _ = load_or_create_key(home / "authority.pem")
        self.store = AuthorityStore(f"sqlite:///{home / 'authority.db'}")
        self.public_key = public_key_b64(self.key)

    def certify(self, uscc: str, name_zh: str, name_en: str, firm_key: Any) -> Any:
        from datetime import UTC, datetime, timedelta

        from authority.issuer import certify
        from keys.identity import public_key_b64

        return certify(self.store, self.key, uscc=uscc, legal_name_zh=name_zh, legal_name_en=name_en,
                       identity_public_key=public_key_b64(firm_key), now=datetime.now(UTC),
                       valid_for=timedelta(days=365))


def _decrypt_with_custodians(admin: httpx.Client, round_id: str, custodian_dir: Path, keys_dir: Path,
                             min_participants: int, authority_key: str) -> None:
    from custodian.decrypt import custodian_decrypt
    from custodian.fetch import fetch_log

    # Each custodian reads the log itself and checks it with the aggregator key published out of band;
    # the aggregator only hands over the contribution bodies, which count only through their logged receipts.
    aggregator_key = (keys_dir / "aggregator" / "identity.pub").read_text().strip()
    request = _check(admin.get(f"/api/v1/rounds/{round_id}/decryption-request"), "decryption request")
    bodies, previous = request["contributions"], request.get("previous_partials", [])
    log = fetch_log(admin, str(admin.base_url))
    shares = sorted(custodian_dir.glob("custodian-*.share"))
    for share, password in zip(shares, CUSTODIAN_PASSWORDS, strict=True):
        partial = custodian_decrypt(share, password, round_id, log=log, aggregator_key=aggregator_key, bodies=bodies,
                                    min_participants=min_participants, authority_key=authority_key,
                                    previous_partials=previous)
        _check(admin.post(f"/api/v1/rounds/{round_id}/partial-decryptions", content=partial,
                          headers={"Content-Type": "application/json"}), f"posting the partial of {share.name}")


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _cross_check(c: dict[str, Any]) -> str:
    if not c:
        return "-"
    verdict = {True: "agree", False: "DISAGREE", None: "partly checkable"}[c.get("agree")]
    return (f"{verdict}: inventory x round background {float(c['from_inventory']):,.1f} vs firms' footprints "
            f"{float(c['from_footprints']):,.1f}" + (f" ({c['note']})" if c.get("note") else ""))


def _table(result: DemoResult) -> Table:
    f = result.factor
    dist = f.get("distribution") or {}
    quantiles = dist.get("quantiles") or {}
    table = Table(title=f"{f['name'].get('en', '')} / {f['name'].get('zh', '')}  ({f.get('region', '')})")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    rows = [
        ("factor", f"{float(f['value']):,.1f} {f['unit']}  ({f.get('gwp_set', '')}, cradle-to-gate)"),
        ("participants", str(f["n_participants"])),
        ("spread over firms", (
            f"SD {float(dist['sd']):,.1f}; " + ", ".join(f"{k} {float(v):,.0f}" for k, v in quantiles.items())
            if dist.get("sd") is not None
            else "not collected (fewer than 10 firms: second moments would pin individual firms)"
        )),
        ("uncertainty", (
            f"GSD {float(dist['pedigree_gsd']):.3f} (pedigree, from the data quality indicators)"
            if dist.get("pedigree_gsd") is not None else "-"
        )),
        ("DQR", f"{float(f['dqr']):.2f}" if f.get("dqr") is not None else "-"),
        ("cross-check", _cross_check(f.get("cross_check") or {})),
        ("version", str(f["version"])),
        ("validity", str(f.get("validity_period", ""))),
        ("plaintext check", (f"{result.plaintext['weighted_mean']:,.1f} (weighted mean of the firms' own footprints, "
                            "computed here only because the demo holds every firm's data)")),
        ("verify", "ok" if result.verify.get("ok") else str(result.verify)),
        ("factor API", f"{result.api_url}/factors/{f['factor_id']}"),
        ("PACT v3", f"{result.pact['base_url']}/3/footprints (token: {result.pact['token_url']})"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


def demo_cmd(
    nodes: Annotated[int, typer.Option("--nodes", help="Enterprise nodes (3..6 for aluminium, 3..5 cement).")] = 5,
    protocol: Annotated[str, typer.Option("--protocol", help="secagg or paillier")] = "secagg",
    industry: Annotated[str, typer.Option("--industry", help="aluminium or cement")] = "aluminium",
    workdir: Annotated[Path | None, typer.Option("--workdir", help="Keep keys, stores and logs here.")] = None,
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Leave the services up until SIGINT or "
                                               "SIGTERM.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
) -> None:
    """Run a full aggregation round on the bundled sample firms, publish the factor and verify it."""
    console = Console(stderr=True)
    if protocol not in ("secagg", "paillier"):
        console.print(f"[red]--protocol {protocol!r}; accepted: secagg, paillier[/red]")
        raise typer.Exit(2)

    def printed(result: DemoResult) -> None:
        if as_json:
            sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            Console().print(_table(result))
            if keep_running:
                console.print("services are up; Ctrl-C (SIGINT) or SIGTERM stops them")

    try:
        result = run_demo(nodes, protocol, industry, workdir, keep_running, quiet=as_json,  # type: ignore[arg-type]
                          on_published=printed, console=console)
    except DemoError as exc:
        console.print("[red]demo failed:[/red] ", end="")
        console.print(str(exc), highlight=False, markup=False)
        raise typer.Exit(EXIT_DEMO) from None
    if not keep_running:
        printed(result)
