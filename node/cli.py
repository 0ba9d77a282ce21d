"""`pcf node ...`: the enterprise node's commands (thin adapters over node.service)."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from common.console import JsonOption, fail, print_json
from common.console import err as err_console
from common.schema_cli import schema_command
from lca.errors import ImportFailed, LCAError, NotFound, SolverError
from lca.model import Process
from node import service
from node.settings import NodeSettings
from node.store import NodeStore

if TYPE_CHECKING:
    from protocols.certificates import MemberCertificate

__all__ = [
    "EXIT_DATABASE",
    "EXIT_IMPORT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_SOLVER",
    "node_app",
    "node_home",
    "open_store",
]

# Exit codes of the node role: 10-19 (see pcf/cli.py for the bands).
EXIT_IMPORT_FAILED = 10
EXIT_NOT_FOUND = 11
EXIT_SOLVER = 12
EXIT_ROUND = 13
EXIT_DATABASE = 14
"""The database cannot be opened, or its schema cannot be used or upgraded."""

node_app = typer.Typer(help="The enterprise node: your unit-process data stays on this machine.",
                       no_args_is_help=True)
db_app = typer.Typer(help="The node's database schema: its revision, upgrades.", no_args_is_help=True)
node_app.add_typer(db_app, name="db")
console = Console()

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: $PCF_NODE_DB_URL, or SQLite "
                                                           "under $PCF_NODE_HOME).")]


def settings() -> NodeSettings:
    """The node's settings from the environment (read anew by each command)."""
    return NodeSettings()


def node_home() -> Path:
    return settings().home


def open_store(db: str | None) -> NodeStore:
    """The node's store (``--db``, else the settings' URL), its schema upgraded as the settings allow.

    A database that cannot be opened or upgraded ends the command with a named error (exit 14).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from node.migrations import SchemaError

    cfg = settings()
    url = db or cfg.database_url
    try:
        store = NodeStore(url, auto_upgrade=cfg.db_auto_upgrade)
    except SchemaError as exc:
        raise fail(str(exc), EXIT_DATABASE, False) from None
    except SQLAlchemyError as exc:
        raise fail(f"cannot open the node database {url}: {type(exc).__name__}: {exc}", EXIT_DATABASE,
                    False) from None
    for note in store.notes:
        if note.startswith("kept"):
            err_console.print(f"[yellow]warning:[/yellow] {note}", highlight=False, soft_wrap=True)
    return store


@node_app.command("template")
def template_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the template files into.")] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Write the blank enterprise template and a filled example (CSV and XLSX)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    folder = resources.files("lca") / "data" / "template"
    for name in ("pcf_template_blank.csv", "pcf_template_blank.xlsx", "pcf_template_example.csv",
                 "pcf_template_example.xlsx", "README.md"):
        target = out / name
        with resources.as_file(folder / name) as src:
            shutil.copyfile(src, target)
        written.append(str(target))
    if as_json:
        print_json({"written": written})
    else:
        for w in written:
            console.print(f"wrote {w}")


@node_app.command("import")
def import_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Template .csv/.xlsx, ILCD zip/folder, JSON-LD zip/folder.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and report; write nothing.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import datasets in one transaction: all of them, or nothing when any error is found."""
    store = open_store(db)
    try:
        report = service.import_paths(store, paths, dry_run=dry_run)
    except ImportFailed as exc:
        if as_json:
            print_json({"ok": False, "errors": [d.model_dump() for d in exc.diagnostics if d.severity == "error"],
                         "diagnostics": [d.model_dump() for d in exc.diagnostics]})
        else:
            for d in exc.diagnostics:
                if d.severity != "info":
                    err_console.print(str(d), highlight=False, soft_wrap=True, markup=False)
            n = sum(d.severity == "error" for d in exc.diagnostics)
            err_console.print(f"[red]import failed: {n} error(s); nothing was written[/red]")
        raise typer.Exit(EXIT_IMPORT_FAILED) from None
    finally:
        store.close()
    if as_json:
        print_json(report.to_dict())
        return
    for d in report.diagnostics:
        if d.severity == "warning":
            console.print(str(d), highlight=False, soft_wrap=True, markup=False)
    table = Table(title="dry run: nothing written" if dry_run else f"import #{report.import_id}")
    for col in ("dataset", "new", "new version", "unchanged"):
        table.add_column(col)
    kinds = sorted({a["kind"] for a in report.actions})
    counts = report.counts()
    for k in kinds:
        table.add_row(k, *(str(counts.get(f"{k}:{a}", 0)) for a in ("new", "new-version", "unchanged")))
    console.print(table)
    console.print(f"{len(report.warnings)} warning(s), 0 errors")


@node_app.command("list")
def list_cmd(
    kind: Annotated[str, typer.Option(help="process, flow, flow_property, unit_group, lcia_method, source, "
                                           "contact, model")] = "process",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the latest version of each dataset of one kind."""
    store = open_store(db)
    rows = store.latest_rows(kind)
    store.close()
    items = [{"uuid": r.uuid, "version": r.version, "name_en": r.name_en, "name_zh": r.name_zh,
              "location": r.location, "classification": r.classification} for r in rows]
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{kind} ({len(items)})")
    for col in ("uuid", "version", "name (en)", "name (zh)", "location"):
        table.add_column(col, overflow="fold")
    for i in items:
        table.add_row(i["uuid"], i["version"], i["name_en"], i["name_zh"], i["location"] or "")
    console.print(table)


@node_app.command("show")
def show_cmd(
    uuid: str,
    version: Annotated[str | None, typer.Option(help="A stored version; the latest by default.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one dataset (any kind) in full."""
    store = open_store(db)
    ds = store.get(uuid, version)
    view = service.store_view(store)
    store.close()
    if ds is None:
        raise fail(f"no dataset {uuid}" + (f" version {version}" if version else ""), EXIT_NOT_FOUND, as_json)
    if as_json:
        print_json(ds.model_dump(mode="json"))
        return
    console.print(f"[bold]{ds.display_name('en')}[/bold]  {ds.name.get('zh', '')}")
    console.print(f"{type(ds).__name__} {ds.uuid} version {ds.version}")
    if isinstance(ds, Process):
        dq = ds.data_quality
        console.print(f"location {ds.location or '-'}  reference year {ds.reference_year or '-'}  "
                      f"DQR {dq.dqr():.2f} ({dq.dqr_level()})" if dq.dqr() else f"location {ds.location or '-'}")
        table = Table()
        for col in ("id", "direction", "flow", "amount", "unit", "source", "ref"):
            table.add_column(col, overflow="fold")
        for ex in ds.exchanges:
            flow = view.flows.get(ex.flow)
            table.add_row(ex.internal_id, ex.direction, flow.display_name() if flow else ex.flow, f"{ex.amount:.6g}",
                          ex.unit, ex.data_source or "", "*" if ex.internal_id in ds.reference_exchanges else "")
        console.print(table)
    else:
        console.print_json(ds.model_dump_json())


@node_app.command("history")
def history_cmd(uuid: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the stored versions of a dataset, oldest first."""
    store = open_store(db)
    versions = store.history(uuid)
    store.close()
    if not versions:
        raise fail(f"no dataset {uuid}", EXIT_NOT_FOUND, as_json)
    if as_json:
        print_json([v.model_dump(mode="json") for v in versions])
        return
    table = Table(title=f"history of {uuid}")
    for col in ("#", "version", "stored at", "import", "content sha256"):
        table.add_column(col)
    for v in versions:
        table.add_row(str(v.seq), v.version, v.created_at.isoformat(timespec="seconds"), str(v.import_id or ""),
                      v.content_hash[:16])
    console.print(table)


@node_app.command("diff")
def diff_cmd(uuid: str, v1: str, v2: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the exchanges that changed between two versions of a process."""
    store = open_store(db)
    try:
        changes = service.diff_versions(store, uuid, v1, v2)
    except NotFound as exc:
        raise fail(str(exc), EXIT_NOT_FOUND, as_json) from None
    finally:
        store.close()
    if as_json:
        print_json({"uuid": uuid, "from": v1, "to": v2, "changes": [c.to_dict() for c in changes]})
        return
    table = Table(title=f"{uuid}: {v1} -> {v2}")
    for col in ("direction", "flow", "unit", v1, v2, "change"):
        table.add_column(col, overflow="fold")
    for c in changes:
        d = c.to_dict()
        rel = "" if d["relative_change"] is None else f"{d['relative_change']:+.1%}"
        table.add_row(c.direction, c.flow_name, c.unit, "-" if c.old is None else f"{c.old:.6g}",
                      "-" if c.new is None else f"{c.new:.6g}", rel)
    console.print(table)


@node_app.command("footprint")
def footprint_cmd(
    uuid: str,
    method: Annotated[str, typer.Option(help="AR5 (default, as the national inventory), AR6, or the UUID of an "
                                             "imported LCIA method.")] = "AR5",
    tree: Annotated[int | None, typer.Option("--tree", help="Show the contribution tree to this depth.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cradle-to-gate carbon footprint of one unit of a process's reference flow."""
    from lca.solver import footprint

    store = open_store(db)
    try:
        bundle = service.store_view(store)
        result = footprint(bundle, uuid.lower(), method=method, tree_depth=tree)
    except SolverError as exc:
        raise fail(str(exc), EXIT_SOLVER, as_json) from None
    except (NotFound, KeyError) as exc:
        raise fail(f"cannot compute the footprint of {uuid}: {exc}", EXIT_NOT_FOUND, as_json) from None
    except LCAError as exc:
        raise fail(str(exc), EXIT_SOLVER, as_json) from None
    finally:
        store.close()
    data = result.to_dict()
    if as_json:
        print_json(data)
        return
    from lca.units import reference_unit

    proc = bundle.processes[uuid.lower()]
    ref = proc.reference_exchange()
    unit = reference_unit(bundle, bundle.flows[ref.flow]) if ref and ref.flow in bundle.flows else ""
    console.print(f"[bold]{proc.display_name('en')}[/bold] {proc.name.get('zh', '')}")
    console.print(f"{data['total']:.6g} {data['unit']} per {unit} ({data['method']}, GWP set "
                  f"{data.get('gwp_set') or '-'})")
    table = Table(title="by gas")
    table.add_column("gas")
    table.add_column("kg CO2e", justify="right")
    for gas, value in sorted(data["by_gas"].items(), key=lambda kv: -abs(kv[1])):
        table.add_row(gas, f"{value:.6g}")
    console.print(table)
    console.print(f"fossil {data.get('fossil', 0):.6g}  biogenic {data.get('biogenic', 0):.6g}  "
                  f"land use {data.get('land_use', 0):.6g}")
    if data.get("cutoffs"):
        console.print(f"[yellow]{len(data['cutoffs'])} unlinked input(s) cut off[/yellow]")
    if tree is not None and data.get("tree"):
        console.print(_rich_tree(data["tree"]))


def _rich_tree(node: dict[str, Any], parent: Tree | None = None) -> Tree:
    name = node.get("name") or {}
    label = (f"{name.get('en') or node['process']}  {name.get('zh', '')}  "
             f"{node['amount']:.4g} {node.get('unit', '')}  direct {node['direct']:.4g}  "
             f"cumulative {node['cumulative']:.4g} kg CO2e ({node['share']:.1%})"
             + ("  [loop]" if node.get("loop") else ""))
    branch = Tree(label) if parent is None else parent.add(label)
    for child in node.get("children", []):
        _rich_tree(child, branch)
    return branch


@node_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Argument(help="The zip file to write.")],
    fmt: Annotated[str, typer.Option("--format", help="ilcd or jsonld")] = "ilcd",
    process: Annotated[list[str] | None, typer.Option("--process", help="Only these processes "
                                                      "(and what they reference).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export the store, or some processes, as an ILCD zip or an openLCA JSON-LD zip."""
    if fmt not in ("ilcd", "jsonld"):
        raise fail(f"unknown format {fmt!r}; accepted: ilcd, jsonld", 2, as_json)
    store = open_store(db)
    try:
        bundle = service.export_bundle(store, fmt, out, process)
    except NotFound as exc:
        raise fail(str(exc), EXIT_NOT_FOUND, as_json) from None
    finally:
        store.close()
    counts = {k: v for k, v in bundle.counts().items() if v}
    if as_json:
        print_json({"written": str(out), "format": fmt, "counts": counts})
    else:
        console.print(f"wrote {out} ({fmt}): " + ", ".join(f"{v} {k}" for k, v in counts.items()))


# -- aggregation rounds ------------------------------------------------------------------------


def _round_error(exc: Exception, as_json: bool) -> typer.Exit:
    return fail(str(exc), EXIT_ROUND, as_json)


@node_app.command("preview")
def preview_cmd(
    round_id: Annotated[str, typer.Argument(help="The round id of an invitation.")],
    process: Annotated[str, typer.Option("--process", help="UUID of your process to contribute.")],
    confirm_zeros: Annotated[bool, typer.Option("--confirm-zeros", help="Contribute components your process "
                                                "lacks as explicit zeros.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show, on this machine only, exactly the vector this node would contribute, with units."""
    from node import rounds
    from protocols.errors import KeysError, ProtocolError

    store = open_store(db)
    try:
        p = rounds.preview(store, round_id, process, confirm_zeros=confirm_zeros)
    except (ProtocolError, KeysError, LCAError) as exc:
        raise _round_error(exc, as_json) from None
    finally:
        store.close()
    data = p.to_dict()
    if as_json:
        print_json(data)
        return
    console.print(f"[bold]Round {round_id}[/bold]: {p.spec.product.name_en} / {p.spec.product.name_zh}, "
                  f"{p.spec.region}, protocol {p.spec.protocol}")
    console.print(f"process {data['process']} version {data['process_version']}, weight {data['weight']:g} "
                  f"{data['weight_unit']}; own footprint {data['footprint_total']:.6g} {data['footprint_unit']}")
    if data["confirmed_zeros"]:
        console.print("confirmed zeros: " + "; ".join(data["confirmed_zeros"]))
    table = Table(title="what would leave this node (masked or encrypted; the aggregator never sees it in clear)")
    for col in ("slot", "value", "unit", "integer"):
        table.add_column(col, overflow="fold")
    for r in data["slots"]:
        table.add_row(r["slot"], f"{r['value']:.10g}", r["unit"], str(r["integer"]))
    console.print(table)
    console.print(f"vector SHA-256 {data['vector_sha256']}")
    _print_cohort(data)


def _print_cohort(data: dict[str, Any]) -> None:
    """Who else is in the round (as the membership authority certified them) and what the round may disclose."""
    d = data["disclosure"]
    console.print(f"disclosure: published only with at least {d['min_participants']} firms (at most "
                  f"{d['max_participants']}; this node demands {d['node_min_participants']}); "
                  f"{d['p_percent']:g} %-rule: {d['dominance_rule']}; statistics {', '.join(d['statistics'])}"
                  + (f"; secagg threshold {d['secagg_threshold_fraction']:.2f} of the roster"
                     if "secagg_threshold_fraction" in d else ""), highlight=False, soft_wrap=True)
    for stage in d["stages"]:
        console.print(f"  stage {stage}", highlight=False, soft_wrap=True)
    for problem in d["refused"]:
        console.print(f"[red]refused by this node's disclosure rules:[/red] {problem}", highlight=False, soft_wrap=True)
    cohort = data.get("cohort")
    if cohort is None:
        console.print("[yellow]cohort: not certified[/yellow] (no roster, or no membership authority key pinned: "
                      "`pcf node enroll --authority-key`); only the aggregator vouches for the other members",
                      highlight=False, soft_wrap=True)
        return
    table = Table(title=f"the cohort you join: {len(cohort)} certified firms (membership authority)")
    for col in ("node", "名称", "name", "USCC", "certificate"):
        table.add_column(col, overflow="fold")
    for m in cohort:
        table.add_row(m["node_id"] + (" (you)" if m.get("you") else ""), m["legal_name_zh"], m["legal_name_en"],
                      m["uscc"], m["serial"][:12])
    console.print(table)


@node_app.command("approve")
def approve_cmd(
    round_id: Annotated[str, typer.Argument(help="The round id of an invitation.")],
    process: Annotated[str, typer.Option("--process", help="UUID of your process to contribute.")],
    confirm_zeros: Annotated[bool, typer.Option("--confirm-zeros", help="Contribute components your process "
                                                "lacks as explicit zeros.")] = False,
    by: Annotated[str, typer.Option("--by", help="Who approves (recorded with the consent).")] = "",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record consent to contribute exactly the previewed vector; nothing is sent without it."""
    from node import rounds
    from protocols.errors import KeysError, ProtocolError

    store = open_store(db)
    try:
        p = rounds.approve(store, round_id, process, confirm_zeros=confirm_zeros, approved_by=by)
    except (ProtocolError, KeysError, LCAError) as exc:
        raise _round_error(exc, as_json) from None
    finally:
        store.close()
    if as_json:
        print_json({"round_id": round_id, "process": p.mapping.process_uuid,
                     "process_version": p.mapping.process_version, "vector_sha256": p.digest})
    else:
        console.print(f"approved round {round_id} with process {p.mapping.process_uuid} "
                      f"version {p.mapping.process_version}; vector SHA-256 {p.digest}")


@node_app.command("outbox")
def outbox_cmd(
    round_id: Annotated[str | None, typer.Option("--round", help="Only this round.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every message that left this node: time, round, recipient, stage, size, SHA-256."""
    from node import rounds

    store = open_store(db)
    rows = rounds.outbox(store, round_id)
    store.close()
    items: list[dict[str, Any]] = [{"sent_at": r.sent_at.isoformat(), "round_id": r.round_id,
                                    "recipient": r.recipient, "stage": r.stage, "size": r.size, "sha256": r.sha256,
                                    "note": r.note}
                                   for r in rows]
    if as_json:
        print_json(items)
        return
    table = Table(title=f"outbox ({len(items)} messages)")
    for col in ("sent at", "round", "recipient", "stage", "bytes", "sha256"):
        table.add_column(col, overflow="fold")
    for i in items:
        table.add_row(i["sent_at"][:19], i["round_id"], i["recipient"], i["stage"], str(i["size"]), i["sha256"][:16])
    console.print(table)


# -- identity, enrolment, invitations ----------------------------------------------------------


@node_app.command("init")
def init_cmd(as_json: JsonOption = False) -> None:
    """Create this node's identity key and SuperNode authentication keys under $PCF_HOME (once)."""
    from keys.identity import (
        fingerprint,
        generate_identity,
        load_private_key,
        public_key_b64,
        save_private_key,
    )
    from keys.tls import generate_supernode_auth_keys

    home = node_home()
    home.mkdir(parents=True, exist_ok=True)
    key_path = home / "identity.pem"
    if not key_path.exists():
        save_private_key(generate_identity(), key_path)
    if not (home / "supernode" / "supernode.key").exists():
        generate_supernode_auth_keys(home / "supernode", "supernode")
    pub = public_key_b64(load_private_key(key_path))
    data = {"home": str(home), "identity_public_key": pub, "fingerprint": fingerprint(pub),
            "supernode_public_key": str(home / "supernode" / "supernode.pub")}
    if as_json:
        print_json(data)
    else:
        for k, v in data.items():
            console.print(f"{k}: {v}")


@node_app.command("enroll")
def enroll_cmd(
    org_zh: Annotated[str, typer.Option("--org-zh", help="Registered name of the firm in Chinese.")],
    org_en: Annotated[str, typer.Option("--org-en", help="Registered name of the firm in English.")],
    url: Annotated[str | None, typer.Argument(help="The aggregator's base URL (same as --aggregator).",
                                              show_default=False)] = None,
    aggregator: Annotated[str | None, typer.Option("--aggregator", help="The aggregator's https:// base URL as the "
                                                   "association published it.", show_default=False)] = None,
    ca: Annotated[Path | None, typer.Option("--ca", help="The association's CA certificate (ca.crt), published out "
                                            "of band: the only CA this node trusts for the aggregator (pinned).",
                                            show_default=False)] = None,
    aggregator_key: Annotated[str | None, typer.Option("--aggregator-key", help="The aggregator's identity public "
                                                       "key as the association published it (pinned; required: "
                                                       "no trust on first use).", show_default=False)] = None,
    insecure_http: Annotated[bool, typer.Option("--insecure-http", help="Development only: accept an http:// URL "
                                                "(signed requests then travel in clear).")] = False,
    paillier_key: Annotated[str | None, typer.Option("--paillier-key", help="The custodians' joint Paillier key "
                                                     "fingerprint as they published it (pcf custodian init); paillier "
                                                     "rounds encrypt to no other key.")] = None,
    certificate: Annotated[Path | None, typer.Option("--certificate", help="This firm's membership certificate "
                                                     "(JSON from `pcf authority certify`), sent with the enrolment.",
                                                     show_default=False)] = None,
    authority_key: Annotated[str | None, typer.Option("--authority-key", help="The membership authority's public "
                                                      "key as it published it (pinned: every member of a round must "
                                                      "hold its certificate).", show_default=False)] = None,
    no_authority: Annotated[bool, typer.Option("--no-authority", help="Development only: enrol without a "
                                               "membership authority (this node then has only the aggregator's "
                                               "word for who else is in a round).")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enrol this node with an aggregator (identity key + SuperNode key); an administrator approves it.

    The URL, CA and aggregator key are pinned: every later command trusts only that CA and that key.
    """
    from node.client import AggregatorClient, NodeClientError
    from protocols.errors import KeysError, ProtocolError

    target = aggregator or url
    if target is None or (aggregator is not None and url is not None and aggregator != url):
        raise fail("give the aggregator's URL once: --aggregator URL", EXIT_ROUND, as_json)
    if aggregator_key is None:
        raise fail("--aggregator-key KEY is required: the aggregator's identity key as the association published "
                   "it (this node trusts no key on first use)", EXIT_ROUND, as_json)
    if not no_authority and (authority_key is None or certificate is None):
        missing = " and ".join(name for name, value in (("--authority-key KEY", authority_key),
                                                       ("--certificate FILE", certificate)) if value is None)
        raise fail(f"{missing} required: the membership authority's key as it published it and this firm's "
                   "certificate from it; without them a round's other members are only what the aggregator says "
                   "(--no-authority: development only)", EXIT_ROUND, as_json)
    if target.lower().startswith("https://") and ca is None:
        raise fail("--ca CA.crt is required for an https:// aggregator: the association's CA certificate as it "
                   "published it (this node trusts no certificate on first use)", EXIT_ROUND, as_json)
    try:
        ca_pem = ca.read_text(encoding="ascii") if ca is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"--ca {ca}: cannot read it: {exc}", EXIT_ROUND, as_json) from None
    if not (node_home() / "identity.pem").exists():
        init_cmd(as_json=False)
    store = open_store(db)
    try:
        if paillier_key is not None:  # pinned first: it comes from the custodians, not from the aggregator
            from node.contribute import pin_paillier_key

            pin_paillier_key(store, paillier_key)
        supernode_pub = (node_home() / "supernode" / "supernode.pub").read_text().strip()
        cert = _read_certificate(certificate) if certificate is not None else None
        with AggregatorClient(store, node_home(), target, ca_pem=ca_pem, insecure_http=insecure_http) as client:
            me = client.enroll(org_zh, org_en, supernode_pub, aggregator_key, certificate=cert,
                               authority_key=authority_key)
    except (NodeClientError, ProtocolError, KeysError, OSError) as exc:
        raise _round_error(exc, as_json) from None
    finally:
        store.close()
    if as_json:
        print_json(me)
    else:
        console.print(f"enrolled as member {me.get('id')} ({me.get('fingerprint')}), status {me.get('status')}")


@node_app.command("rounds")
def rounds_cmd(
    offline: Annotated[bool, typer.Option("--offline", help="List stored invitations without fetching.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch round invitations (spec and roster signatures checked against the enrolled aggregator key)."""
    from node import rounds
    from node.client import AggregatorClient, NodeClientError
    from protocols.errors import KeysError, ProtocolError

    store = open_store(db)
    try:
        if not offline:
            with AggregatorClient(store, node_home()) as client:
                client.fetch_invitations()
        items = rounds.list_invitations(store)
    except (NodeClientError, ProtocolError, KeysError, OSError) as exc:
        raise _round_error(exc, as_json) from None
    finally:
        store.close()
    if as_json:
        print_json(items)
        return
    table = Table(title="round invitations")
    for col in ("round", "product", "region", "period", "protocol", "deadline", "approved"):
        table.add_column(col, overflow="fold")
    for i in items:
        table.add_row(i["round_id"], f"{i['product']['en']} / {i['product']['zh']}", i["region"], i["period"],
                      i["protocol"], i["deadline"][:16], "yes" if i["approved"] else "no")
    console.print(table)


@node_app.command("contribute")
def contribute_cmd(
    round_id: Annotated[str, typer.Argument(help="An approved paillier round.")],
    wait: Annotated[float, typer.Option("--wait", help="Keep polling for up to SECONDS, posting each stage as the "
                                        "round opens it, until the round ends (for scripts and the demo).")] = 0.0,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between polls with --wait.")] = 1.0,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Post this firm's contribution to the disclosure stage the round waits for (paillier rounds).

    While the round is open that is the screen stage; later stages (dominance, values, cells) are
    computed from the approved vector and the stage context the aggregator signs. Each stage is
    sent once; the command says what it sent and which stage the round waits for.
    """
    import time

    from node.client import AggregatorClient, NodeClientError
    from protocols.errors import KeysError, ProtocolError

    store = open_store(db)
    sent: list[str] = []
    try:
        with AggregatorClient(store, node_home()) as client:
            give_up = time.monotonic() + max(wait, 0.0)
            while True:
                result = client.contribute_paillier(round_id)
                if result["sent"] is not None:
                    sent.append(result["sent"])
                    if not as_json:
                        console.print(f"round {round_id}: sent stage {result['sent']} (log entry "
                                      f"{result['receipt']['seq']})")
                ended = result["state"] in ("published", "suppressed", "aborted")
                if ended or time.monotonic() >= give_up:  # --wait waits for the round's end, not just its last post
                    break
                if result["sent"] is None:
                    time.sleep(max(poll, 0.05))
    except (NodeClientError, ProtocolError, KeysError, OSError) as exc:
        raise _round_error(exc, as_json) from None
    finally:
        store.close()
    result["sent_now"] = sent
    if as_json:
        print_json(result)
        return
    if result["state"] in ("published", "suppressed", "aborted"):
        console.print(f"round {round_id} ended ({result['state']}): {result['decision'] or ''}")
    elif result["waiting_for"] is None:
        console.print(f"round {round_id} ({result['state']}): every stage sent; the round waits for its decryption")
    else:
        done = ", ".join(result["sent_stages"]) or "none"
        console.print(f"round {round_id} ({result['state']}) waits for stage {result['waiting_for']}; "
                      f"stages sent by this node: {done}")


@node_app.command("audit")
def audit_cmd(
    round_id: Annotated[str, typer.Argument(help="A round this node took part in.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the stage contexts the aggregator sent this node against its public log and the published totals.

    Each later stage of a round (dominance, values, cells) is computed from a context the aggregator
    signed; the log must name exactly that context, and the published production and footprint
    totals must lie in the brackets this node computed its share bits against. A finding is evidence
    (the signed context is in this node's store); exit code 1 when there is one.
    """
    from node.client import AggregatorClient, NodeClientError
    from protocols.errors import KeysError, ProtocolError

    store = open_store(db)
    try:
        with AggregatorClient(store, node_home()) as client:
            result = client.audit(round_id)
    except (NodeClientError, ProtocolError, KeysError, OSError) as exc:
        raise _round_error(exc, as_json) from None
    finally:
        store.close()
    if as_json:
        print_json(result)
    else:
        console.print(f"round {round_id}: {len(result['contexts'])} stage context(s) kept "
                      f"({', '.join(result['contexts']) or 'none'}); published: {result['published']}")
        for finding in result["findings"]:
            console.print(f"[red]finding[/red] {finding['message']}", highlight=False, soft_wrap=True)
        if not result["findings"]:
            console.print("the log and the publication agree with every context this node was sent")
    if result["findings"]:
        raise typer.Exit(1)


@node_app.command("pin-paillier-key")
def pin_paillier_key_cmd(
    fingerprint: Annotated[str, typer.Argument(help="The custodians' joint Paillier key fingerprint (64 hex digits), "
                                               "as they published it.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pin the custodians' joint Paillier key: paillier rounds whose spec names another key are refused."""
    from node.contribute import PAILLIER_KEY_SETTING, pin_paillier_key
    from protocols.errors import ContributionError

    store = open_store(db)
    try:
        before = store.get_setting(PAILLIER_KEY_SETTING)
        pinned = pin_paillier_key(store, fingerprint)
    except ContributionError as exc:
        raise _round_error(exc, as_json) from None
    finally:
        store.close()
    if as_json:
        print_json({"paillier_key": pinned, "replaced": before if before != pinned else None})
    else:
        console.print(f"pinned the custodians' Paillier key {pinned}"
                      + (f" (replacing {before})" if before and before != pinned else ""))


def _read_certificate(path: Path) -> MemberCertificate:
    from protocols.certificates import MALFORMED, CertificateRejected, MemberCertificate

    try:
        return MemberCertificate.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CertificateRejected(MALFORMED, f"--certificate {path}: not a membership certificate: {exc}") from None


@node_app.command("crl")
def crl_cmd(
    path: Annotated[Path, typer.Argument(help="The membership authority's signed revocation list "
                                              "(JSON from `pcf authority crl`).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load the authority's revocation list: rounds with a revoked member are refused from now on."""
    import json

    from node.cohort import load_revocation_list
    from protocols.errors import KeysError, ProtocolError

    store = open_store(db)
    try:
        crl = load_revocation_list(store, json.loads(path.read_text(encoding="utf-8")))
    except (ProtocolError, KeysError, OSError, ValueError) as exc:
        raise _round_error(exc, as_json) from None
    finally:
        store.close()
    info = {"number": crl.number, "issued_at": crl.issued_at.isoformat(), "next_update": crl.next_update.isoformat(),
            "revoked": len(crl.revoked)}
    if as_json:
        print_json(info)
    else:
        console.print(f"revocation list {crl.number} of {info['issued_at']} loaded: {len(crl.revoked)} revoked "
                      f"serial(s); next due {info['next_update']}")


# -- database schema ---------------------------------------------------------------------------


def _schema_command(db: str | None, as_json: bool, upgrade: bool) -> None:
    from node import migrations
    from node.store import make_engine

    engine = make_engine(db or settings().database_url)
    schema_command(migrations.SCHEMA, engine, upgrade=upgrade, as_json=as_json, exit_code=EXIT_DATABASE)


@db_app.command("upgrade")
def db_upgrade_cmd(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Upgrade the database to this release's schema (a release 0.1 database is recognised and adopted)."""
    _schema_command(db, as_json, upgrade=True)


@db_app.command("current")
def db_current_cmd(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Print the database's schema revision and whether it is the one this release needs."""
    _schema_command(db, as_json, upgrade=False)


# -- the SuperNode and the code it runs ----------------------------------------------------------

fab_app = typer.Typer(help="The Flower App Bundles this node runs: its own build's hash, the firm's approvals.",
                      no_args_is_help=True)
node_app.add_typer(fab_app, name="fab")


@node_app.command("supernode", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def supernode_cmd(
    ctx: typer.Context,
    poll_interval: Annotated[float, typer.Option(help="Seconds between polls of the SuperNode for tasks.")] = 0.1,
) -> None:
    """Run flower-supernode (every other option is passed on) with this node's ClientApp runner.

    The SuperNode runs with --isolation process, so no ClientApp starts but the runner's: it checks
    each round's FAB against the one this installed package builds, refuses any other (with a reason
    in the outbox and the log), and runs only this package's ClientApp (node.clientapp_runner).
    """
    import logging

    from node.clientapp_runner import run_supernode

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = settings()
    try:
        code = run_supernode(ctx.args, cfg.home, lambda: NodeStore(cfg.database_url, auto_upgrade=cfg.db_auto_upgrade),
                             poll_interval=poll_interval)
    except ValueError as exc:
        raise fail(str(exc), 2, False) from None
    raise typer.Exit(code)


@fab_app.command("hash")
def fab_hash_cmd(
    serverapp: Annotated[str | None, typer.Option(help="The ServerApp the FAB names (default: the release's).")]
    = None,
    as_json: JsonOption = False,
) -> None:
    """The SHA-256 of the FAB this installed package builds: compare it with a release's published hash."""
    from protocols.fab import APPROVED_CLIENTAPP, DEFAULT_SERVERAPP, build_fab, fab_hash

    digest = fab_hash(build_fab(serverapp=serverapp or DEFAULT_SERVERAPP))
    if as_json:
        print_json({"fab_hash": digest, "clientapp": APPROVED_CLIENTAPP, "serverapp": serverapp or DEFAULT_SERVERAPP})
    else:
        console.print(digest)


@fab_app.command("approve")
def fab_approve_cmd(
    fab_hash: Annotated[str, typer.Argument(help="The FAB's SHA-256 (64 hex digits), as the release publishes it.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Also accept the FAB with this hash (e.g. a new release's, before upgrading); it still runs only this node's ClientApp."""
    from node.clientapp_runner import approve_fab

    store = open_store(db)
    try:
        hashes = approve_fab(store, fab_hash)
    except ValueError as exc:
        raise fail(str(exc), 2, as_json) from None
    finally:
        store.close()
    if as_json:
        print_json({"approved": sorted(hashes)})
    else:
        console.print(f"approved FAB {fab_hash.strip().lower()} ({len(hashes)} approved)")


@fab_app.command("list")
def fab_list_cmd(db: DbOption = None, as_json: JsonOption = False) -> None:
    """The FAB hashes the firm approved besides its own build's."""
    from node.clientapp_runner import approved_fabs

    store = open_store(db)
    try:
        hashes = sorted(approved_fabs(store))
    finally:
        store.close()
    if as_json:
        print_json({"approved": hashes})
    else:
        for digest in hashes:
            console.print(digest)
