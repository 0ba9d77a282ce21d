"""Privacy canary: after a secagg round, no firm's values appear in anything the aggregator side stored, logged or received.

Each firm's data carry unusual canary amounts (exact at the spec's fixed-point scales). After a
full secagg round over the real Deployment Engine, every byte the aggregator side holds is
searched for every canary in every encoding a leak would plausibly take: decimal text, float64
bytes, and the fixed-point slot integers the contribution carries (decimal text, 64-bit bytes
both byte orders). Zero hits are required. A plain-sum control round over the same nodes and
approved vectors must then show the canaries in its recorded messages and in the SuperLink's
database (which keeps relayed message bodies): the search can find them where they would be. The
control's ClientApp is test-only (``tests/plain_apps.py``) and runs on SuperNodes restarted without
the node's gate, which would refuse it. Every message of the secagg round is also matched with its
sender's outbox entry (SHA-256 of the same bytes).

Decimal patterns match only between non-digits (``612347`` is not found inside ``96123470``),
since a leaked number is written as a number of its own.

The three canary firms share one electricity supply, so every component they report is reported
by all three. A component one firm alone reports is a different matter: any exact sum of it *is*
that firm's value, whatever the transport. The second test runs a round designed the way the
sample round once was, one component per grid flow (each smelter's grid is its own), and shows
that the component-level disclosure rule withholds those components everywhere: statistics,
factor, stored aggregate, public log. The third shows that the sample round itself no longer has
such a component: every grid's electricity is one component (``Component.aliases``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from round_harness import Firm, enrol_and_start, open_round, public, run_round
from stage_runner import stage_runner

from aggregator import rounds
from aggregator.flower_runner import FlowerSecAggRunner
from aggregator.rounds import RosterEntry, StageRun
from aggregator.settings import AggregatorSettings
from aggregator.store import MemberRow, open_store
from keys.identity import generate_identity, public_key_b64
from node import rounds as node_rounds
from node.contribute import map_process
from node.service import import_paths
from node.store import NodeStore
from pcf.deploy import Deployment
from pcf.flower_app import read_records
from pcf.samples import (
    background_files,
    firm_files,
    industry,
    load_bundle,
    sample_spec,
    spec_for_processes,
)
from protocols.disclosure import Stage
from protocols.factor import PublishedFactor
from protocols.spec import RoundSpec, sign_spec, vector_layout
from protocols.stats import aggregate_statistics

# Per firm: alumina (t, scale 1e6), electricity (kWh, 1e2), fossil CO2 (kg, 1e4), annual production (t, 1).
# No firm's value is near the (weighted) mean, so a published mean never matches one in 6 digits.
CANARIES = [
    {"Alumina": 1.927361, "kWh": 13417.37, "carbon dioxide (fossil)": 1507.4183, "production": 612347.0},
    {"Alumina": 1.938472, "kWh": 13588.41, "carbon dioxide (fossil)": 1512.6927, "production": 587213.0},
    {"Alumina": 1.915283, "kWh": 13489.53, "carbon dioxide (fossil)": 1523.8164, "production": 634981.0},
]
# Slots whose integers come from the canaries (x, w·x, w·x², w, w², and the footprint built from them).
_SLOT = re.compile(r"^(x|wx|wx2)\[(?P<component>.+)\]$")
_MIN_DISTINCT = 10**5  # smaller integers are too common to tell a leak from chance


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def _is_exchange(row: list[str]) -> bool:
    return len(row) > 9 and row[0] in ("input", "output") and row[9] != "yes"


def canary_template(source: Path, target: Path, values: dict[str, float], *, supply: Path | None = None) -> Path:
    """A copy of a firm template with the canary amounts and annual production.

    With ``supply``, the electricity flow (uuid and names) is the one of that template's firm.
    """
    grid = next(r for r in _rows(supply) if _is_exchange(r) and r[8] == "kWh") if supply else None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in _rows(source):
        if row[:1] == ["annual_production"]:
            row[1] = repr(values["production"])
        elif _is_exchange(row):
            key = "kWh" if row[8] == "kWh" else row[2]
            if key == "kWh" and grid is not None:
                row[1:4] = grid[1:4]
            if key in values:
                row[7] = repr(values[key])
        writer.writerow(row)
    target.write_text(out.getvalue(), encoding="utf-8")
    return target


# ------------------------------------------------------------------------------------------ search


@dataclass(frozen=True)
class Pattern:
    firm: int
    canary: str
    encoding: str
    needle: bytes
    decimal: bool

    def hits(self, data: bytes) -> int:
        if not self.decimal:
            return data.count(self.needle)
        return len(re.findall(rb"(?<![0-9])" + re.escape(self.needle) + rb"(?![0-9])", data))


def float_patterns(firm: int, name: str, value: float) -> list[Pattern]:
    texts = {repr(value), f"{value:.6g}", f"{value}"}
    out = [Pattern(firm, name, f"text {t!r}", t.encode(), True) for t in sorted(texts)]
    out += [
        Pattern(firm, name, "float64 LE", struct.pack("<d", value), False),
        Pattern(firm, name, "float64 BE", struct.pack(">d", value), False),
    ]
    return out


def int_patterns(firm: int, name: str, value: int) -> list[Pattern]:
    out = [Pattern(firm, name, "decimal", str(value).encode(), True)]
    seen: set[bytes] = set()
    for label, fmt in (("int64 LE", "<q"), ("int64 BE", ">q"), ("uint64 LE", "<Q"), ("uint64 BE", ">Q")):
        raw = struct.pack(fmt, value if fmt[1] == "q" else value % 2**64)
        if raw not in seen:
            seen.add(raw)
            out.append(Pattern(firm, name, label, raw, False))
    return out


def canary_patterns(firm: int, values: dict[str, float], slots: list[dict[str, object]]) -> list[Pattern]:
    """Every encoding of one firm's canary amounts and of the slot integers derived from them."""
    out = [p for name, v in values.items() for p in float_patterns(firm, name, v)]
    components = {k for k in values if k != "production"}
    for row in slots:
        name, integer = str(row["slot"]), int(str(row["integer"]))
        m = _SLOT.match(name)
        from_canary = (
            name in ("w", "w2", "F", "F2", "wF2")
            or name.startswith("wF[")
            or (m is not None and (m["component"] in components or "Electricity" in m["component"]))
        )
        if from_canary and abs(integer) >= _MIN_DISTINCT:
            out += int_patterns(firm, f"slot {name}", integer)
    return out


@dataclass
class Source:
    name: str
    paths: list[Path]
    data: bytes = b""
    hits: dict[Pattern, int] = field(default_factory=dict)

    def read(self) -> Source:
        self.data = b"".join(p.read_bytes() for p in self.paths if p.is_file())
        return self

    def search(self, patterns: Iterable[Pattern]) -> Source:
        self.hits = {p: n for p in patterns if (n := p.hits(self.data))}
        return self


def files_under(*roots: Path, pattern: str = "**/*") -> list[Path]:
    return sorted(p for root in roots for p in (root.glob(pattern) if root.is_dir() else [root]) if p.is_file())


def table(sources: list[Source], n_patterns: int) -> str:
    rows = [f"{'source':<34} {'files':>5} {'bytes searched':>15} {'hits':>6}"]
    for s in sources:
        rows.append(f"{s.name:<34} {len([p for p in s.paths if p.is_file()]):>5} {len(s.data):>15,} {sum(s.hits.values()):>6}")
    rows.append(f"{'patterns (canary × encoding)':<34} {'':>5} {n_patterns:>15,}")
    return "\n".join(rows)


# -------------------------------------------------------------------------------------------- test


@pytest.mark.slow
def test_no_canary_reaches_the_aggregator_side_and_the_plaintext_control_finds_them(tmp_path: Path) -> None:
    # Prepare: three firms whose templates carry canary values
    root = tmp_path / "deploy"
    record = root / "records" / "secagg.bin"
    templates = tmp_path / "templates"
    templates.mkdir()
    with Deployment(root) as d:
        d.start_superlink()
        d.start_aggregator({"PCF_AGG_FLOWER_RECORD_PATH": str(record)})
        files = firm_files("aluminium")
        firms = [
            Firm.create(d, f"canary{i}", canary_template(files[i], templates / f"firm_{i}.csv", v, supply=files[0]))
            for i, v in enumerate(CANARIES)
        ]
        enrol_and_start(d, firms)
        spec = sample_spec("aluminium", n_firms=3, round_id="canary-aluminium-2024")
        opened = open_round(d, spec)
        previews = [f.accept_invitation(spec.round_id, consent=True) for f in firms]
        patterns = [
            p
            for i, (values, preview) in enumerate(zip(CANARIES, previews, strict=True))
            if preview is not None
            for p in canary_patterns(i, values, preview.rows())
        ]
        assert all(preview is not None and preview.mapping.weight == v["production"] for preview, v in zip(previews, CANARIES, strict=True))

        # Execute: the secagg round, then snapshot everything the aggregator side holds
        ready = time.monotonic()
        result = run_round(d, spec.round_id, timeout=100)
        round_seconds = time.monotonic() - ready
        assert result["state"] == "published", f"{result['decision']}\n{d.log('aggregator')[-3000:]}"
        aggregator_home = root / "aggregator"
        sources = [
            Source("aggregator database (+WAL)", files_under(aggregator_home, pattern="aggregator.db*")),
            Source("aggregator stored files", [p for p in files_under(aggregator_home) if not p.name.startswith("aggregator.db")]),
            Source("aggregator log", [root / "logs" / "aggregator.log"]),
            Source("SuperLink database (+WAL)", files_under(root / "superlink")),
            Source("SuperLink log", [root / "logs" / "superlink.log"]),
            Source("Flower CLI/SuperLink home", files_under(d.flwr_home)),
            Source("ServerApp received (recorded)", [record]),
        ]
        for source in sources:
            source.read().search(patterns)
        assert record.stat().st_size > 0 and len(read_records(record)) >= 4 * len(firms)
        # every message the ServerApp received is in its sender's outbox (recorded at the layer that sent it)
        sent = {row.sha256 for f in firms for row in f.outbox(spec.round_id)}
        unrecorded = [blob[:60] for blob in read_records(record) if hashlib.sha256(blob).hexdigest() not in sent]
        assert unrecorded == [], unrecorded

        # Control: a plain-sum round over the same nodes and approved vectors, recorded too. The
        # installed package has no plaintext ClientApp and the nodes' gate refuses any FAB naming
        # another, so the control runs the test-only tests.plain_apps on SuperNodes without the gate.
        for firm in firms:
            d.stop_process(f"supernode-{firm.handle.name}")
            d.start_supernode(firm.handle, approved_code_only=False)
        control_record = root / "records" / "control.bin"
        settings = AggregatorSettings(
            environment="development",
            home=tmp_path / "control",
            admin_token=SecretStr("control-admin-token-0123456789"),
            pact_client_secret=SecretStr("control-pact-secret-0123456789"),
            superlink_address=f"{d.superlink_address_host}:{d.superlink_port}",
            superlink_root_certificates=d.tls_dir / "ca.crt",
            flwr_home=d.flwr_home,
            # the restarted SuperNodes rejoin once the SuperLink has seen the old ones go
            flower_connect_timeout_seconds=180.0,
        )
        control = FlowerSecAggRunner(
            settings,
            serverapp="tests.plain_apps:plain_server_app",
            clientapp="tests.plain_apps:store_plain_client_app",
            record_path=control_record,
        )
        roster = [RosterEntry("", key, "", node) for node, key in opened["roster"]["roster"].items()]
        # one plain "stage" carrying the whole vector: everything a firm approved, in the clear
        plain = control(spec, roster, StageRun(Stage.SCREEN, len(vector_layout(spec)), None))
        control.end(spec)  # the control is one stage: its run ends here
        plain_sum, n = list(plain.summed), len(plain.contributors)
        control_source = Source("control: ServerApp received (plain)", [control_record]).read().search(patterns)
        # For information: whether the SuperLink's database kept the plaintext messages it relayed.
        control_link = Source("control: SuperLink database", files_under(root / "superlink")).read().search(patterns)
        log = public(d, "/api/v1/log").json()["entries"]

    # Assert: nothing on the aggregator side; the control shows every slot canary to its ServerApp
    print(f"\nsecagg round {round_seconds:.1f} s; {len(patterns)} patterns over {len(firms)} firms")
    print(table([*sources, control_source, control_link], len(patterns)))
    leaks = {s.name: sorted({(p.firm, p.canary, p.encoding) for p in s.hits}) for s in sources if s.hits}
    for name, found in leaks.items():
        print(f"LEAK in {name}:", *found, sep="\n  ")
    assert leaks == {}, leaks
    (aggregate,) = [e["payload"] for e in log if e["type"] == "aggregate"]
    assert n == len(firms) == aggregate["n"]
    shown = [(i, int(v)) for i, v in enumerate(aggregate["summed"]) if v is not None]
    assert shown and all(plain_sum[i] == v for i, v in shown)  # the secure sum is the plain sum
    slot_patterns = {p for p in patterns if p.canary.startswith("slot ") and p.encoding == "int64 LE"}
    assert slot_patterns and slot_patterns <= set(control_source.hits), "the control round's vectors lack canaries"
    assert control_link.hits, "the SuperLink database search would not see relayed plaintext"


def per_grid_spec(round_id: str, n_firms: int) -> RoundSpec:
    """The aluminium round without aliases: one component per electricity flow, each one smelter's own."""
    ind = industry("aluminium")
    bundle = load_bundle(background_files() + firm_files("aluminium")[:n_firms])
    firms = [p for p in bundle.processes.values() if p.annual_production is not None]
    return spec_for_processes(
        bundle, firms, name_en=ind.name_en, name_zh=ind.name_zh, code=ind.code, round_id=round_id,
        scales=ind.scales, footprint_bound=ind.footprint_bound, histogram_edges=list(ind.histogram_edges),
    )  # fmt: skip


def test_a_component_reported_by_one_firm_alone_is_withheld_from_statistics_factor_store_and_log(
    tmp_path: Path,
) -> None:
    # Prepare: the sample firms as they are (one electricity flow each), canary amounts, a round
    # with a component per grid flow, consent
    key = generate_identity()
    spec = per_grid_spec("single-reporter", 3)
    grids = [c for c in spec.components if c.unit == "kWh"]
    assert len(grids) == 3  # Yunnan, Xinjiang, captive: one smelter each
    vectors: list[list[int]] = []
    patterns: list[Pattern] = []
    for i, values in enumerate(CANARIES):
        store = NodeStore(f"sqlite:///{tmp_path / f'node{i}.db'}")
        store.set_setting(node_rounds.AGGREGATOR_KEY_SETTING, public_key_b64(key))
        import_paths(store, [*background_files(), canary_template(firm_files("aluminium")[i], tmp_path / f"f{i}.csv", values)])
        node_rounds.receive_invitation(store, sign_spec(spec, key))
        uuid = next(p.uuid for p in store.bundle().processes.values() if p.annual_production)
        preview = node_rounds.approve(store, spec.round_id, uuid, confirm_zeros=True)
        vectors.append([int(v) for v in node_rounds.approved_contribution(store, spec.round_id)[1].ints])
        patterns += canary_patterns(i, values, preview.rows())
        store.close()
    summed = [sum(c) for c in zip(*vectors, strict=True)]
    agg_store = open_store(f"sqlite:///{tmp_path / 'aggregator.db'}")
    with agg_store.transaction() as tx:  # the three firms as members: the published version records its cohort
        for i in range(len(vectors)):
            tx.add_member(MemberRow(fingerprint=f"fp{i}", org_name_zh=f"企业{i}", org_name_en=f"firm{i}",
                                    identity_public_key=f"firm{i}", supernode_public_key=f"sn{i}", status="approved",
                                    created_at=datetime.now(UTC), updated_at=datetime.now(UTC)))
    ctx = rounds.RoundContext(
        store=agg_store,
        key=key,
        runner=stage_runner(lambda _spec, _roster: {f"firm{i}": v for i, v in enumerate(vectors)}),
        spawn=lambda work: work(),
    )

    # Execute: the round over the exact sum of the three approved vectors
    rounds.create_round(ctx, spec)
    rounds.open_round(ctx, spec.round_id)
    rounds.run_round(ctx, spec.round_id)
    assert rounds.get_round(ctx, spec.round_id).state == "published"
    with agg_store.transaction() as tx:
        entries = tx.list_log()
        stored = tx.get_aggregate(spec.round_id)
        (factor_row,) = tx.list_factors()
    public_log = "\n".join(row.payload for row in entries).encode()
    (aggregate,) = [json.loads(row.payload) for row in entries if row.entry_type == "aggregate"]
    agg_store.close()

    # Assert: the grid components are withheld in the statistics, the factor, the store and the log
    names = [s.name for s in vector_layout(spec)]
    grid_slots = {f"wx[{c.name_en}]" for c in grids}  # the linear statistics' slots: never summed
    stats = aggregate_statistics(spec, summed, 3)
    assert {c.name_en for c in stats.withheld} == {c.name_en for c in grids}
    assert all(c.reporters == 1 and c.weighted_mean is None for c in stats.withheld)
    factor = PublishedFactor.model_validate_json(factor_row.document)
    assert not {c.flow for c in grids} & {e.flow for e in factor.unit_process.exchanges}
    assert {u.flow for u in factor.cross_check.unchecked} == {c.flow for c in grids}
    assert stored is not None and {n for n, v in zip(names, stored[0], strict=True) if v is None} == grid_slots
    assert grid_slots <= set(aggregate["withheld"])
    assert all(aggregate["summed"][names.index(n)] is None for n in grid_slots)
    assert all(aggregate["summed"][names.index(f"n[{c.name_en}]")] == "1" for c in grids)
    # ... and no firm's value anywhere in the aggregator's database or its public log
    found = {
        source.name: sorted({(p.firm, p.canary) for p in source.hits})
        for source in (Source("aggregator database", files_under(tmp_path, pattern="aggregator.db*")).read(),
                       Source("public log", [], data=public_log))
        if source.search(patterns).hits
    }
    assert found == {}, found


def test_the_sample_aluminium_round_has_no_component_fewer_than_min_participants_firms_report() -> None:
    # Prepare: every sample smelter on its own grid (or captive plant)
    spec = sample_spec("aluminium")
    bundle = load_bundle(background_files() + firm_files("aluminium"))
    firms = [p for p in bundle.processes.values() if p.annual_production is not None]

    # Execute: map each smelter's process to the round as its node would
    reporters = {c.flow: 0 for c in spec.components}
    for firm in firms:
        mapping = map_process(spec, bundle, firm.uuid)
        for flow, value in mapping.values.items():
            reporters[flow] += value != 0

    # Assert: every component, electricity included, is reported by every smelter
    assert len(firms) == 6 and set(reporters.values()) == {6}
    (power,) = [c for c in spec.components if c.aliases]
    assert power.unit == "kWh" and len(power.aliases) == 5


def test_every_sample_kiln_reports_every_component_of_the_cement_round() -> None:
    spec = sample_spec("cement")
    bundle = load_bundle(background_files() + firm_files("cement"))
    firms = [p for p in bundle.processes.values() if p.annual_production is not None]
    reporters = {c.flow: 0 for c in spec.components}
    for firm in firms:
        for flow, value in map_process(spec, bundle, firm.uuid).values.items():
            reporters[flow] += value != 0
    assert len(firms) == 5 and set(reporters.values()) == {5}
