"""Independent check of a published factor against the aggregator's transparency log, over HTTP only.

``verify_factor`` needs nothing but the service's public endpoints: it re-checks the whole hash
chain and every signature (aggregator and members), finds the round behind the factor, verifies
the signed spec, checks that the factor served is the one logged, and recomputes the factor from
the logged aggregate with ``protocols.stats.aggregate_statistics`` and ``protocols.factor.build_factor``.
The log withholds the histogram and the sums of components reported by fewer than
``min_participants`` firms; it keeps their reporter counts, so the check also confirms that exactly
the components the rule covers were withheld. Likewise for gases: the log withholds the per-gas
sums of the gases the gas-level rule merges and carries their sum instead (``other_gases``), from
which the factor's ``"other gases"`` and totals are recomputed.
The first thing that does not check out is reported with the log sequence number it concerns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from aggregator import translog
from aggregator.repository import document_hash
from protocols.errors import AggregationError, InvalidSignature, ProtocolError
from protocols.factor import PublishedFactor, build_factor
from protocols.spec import KIND_HIST, SignedSpec, spec_hash, vector_layout, verify_spec
from protocols.stats import (
    OTHER_GASES,
    aggregate_statistics,
    merged_gases,
    withheld_slots,
)

__all__ = ["VerifyReport", "verify_factor"]

_FLOAT_REL_TOL = 1e-9
_DECIMAL = re.compile(r"-?[0-9]{1,60}(\.[0-9]{1,60})?")


class VerifyReport(BaseModel):
    """The outcome of :func:`verify_factor`."""

    ok: bool
    factor_id: str
    version: str | None = None
    base_url: str
    aggregator_public_key: str | None = None
    round_id: str | None = None
    entries_checked: int = 0
    break_seq: int | None = None
    """Log sequence number of the first entry that does not check out (``None``: not tied to one entry)."""
    reason: str | None = None
    checks: list[str] = []
    """What was checked and held, in order."""
    unverified: list[str] = []
    """What the public log cannot prove (e.g. quantiles, whose histogram it withholds)."""


class _Fail(Exception):
    def __init__(self, reason: str, seq: int | None = None):
        self.reason, self.seq = reason, seq
        super().__init__(reason)


def _get(client: httpx.Client, url: str, what: str, **params: Any) -> Any:
    try:
        response = client.get(url, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as exc:
        raise _Fail(f"cannot fetch {what} from {url}: {exc}") from None
    if response.status_code != 200:
        raise _Fail(f"{what}: {url} answered HTTP {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError:
        raise _Fail(f"{what}: {url} did not answer JSON") from None


def _fetch_log(client: httpx.Client, base: str) -> tuple[str, list[translog.LogEntry]]:
    entries: list[translog.LogEntry] = []
    key: str | None = None
    next_seq: int | None = 1
    while next_seq is not None:
        try:
            page = translog.LogPage.model_validate(_get(client, f"{base}/api/v1/log", "transparency log", from_seq=next_seq))
        except ValidationError as exc:
            raise _Fail(f"transparency log page from seq {next_seq} is malformed: {exc.errors()[0]['msg']}") from None
        if key is not None and page.aggregator_public_key != key:
            raise _Fail("the log's aggregator key changed between pages", next_seq)
        key = page.aggregator_public_key
        entries.extend(page.entries)
        if page.next_seq is not None and page.next_seq <= next_seq:
            raise _Fail(f"log paging does not advance (next_seq {page.next_seq})", next_seq)
        next_seq = page.next_seq
    assert key is not None
    return key, entries


def _diff(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """Paths where ``a`` (served) and ``b`` (recomputed) differ; floats compared to 1e-9 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path} (length {len(a)} ≠ {len(b)})"
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                yield from _diff(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        if not (math.isclose(a, float(b), rel_tol=_FLOAT_REL_TOL, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))):
            yield f"{path} (served {a!r}, recomputed {b!r})"
    elif a != b:
        yield f"{path} (served {str(a)[:80]!r}, recomputed {str(b)[:80]!r})"


def _decimal(text: Any) -> Fraction:
    """A logged decimal string as an exact fraction (plain digits only: no exponent to blow up)."""
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
        raise ValueError(f"{str(text)[:40]!r} is not a decimal string")
    return Fraction(text)


def _find(entries: list[translog.LogEntry], entry_type: str, **match: Any) -> list[translog.LogEntry]:
    return [
        e for e in entries if e.type == entry_type and all(e.payload.get(k) == v for k, v in match.items())
    ]


def verify_factor(
    factor_id: str,
    base_url: str,
    *,
    version: str | None = None,
    aggregator_public_key: str | None = None,
    client: httpx.Client | None = None,
) -> VerifyReport:
    """Verify a published factor against the aggregator's public transparency log.

    Parameters
    ----------
    factor_id
        The factor's UUID.
    base_url
        The aggregator service, e.g. ``https://agg.example.org``.
    version
        ILCD version or revision number; default the newest.
    aggregator_public_key
        The aggregator key you trust (base64url). Default: the key the service announces, which
        proves consistency but not that the service is who it claims to be.
    client
        HTTP client to use (one is created and closed otherwise).

    Returns
    -------
    VerifyReport
        ``ok`` when every check held; otherwise ``reason`` and, where it concerns one log entry,
        ``break_seq``.
    """
    base = base_url.rstrip("/")
    report = VerifyReport(ok=False, factor_id=factor_id, version=version, base_url=base)
    own = client is None
    http = client or httpx.Client(timeout=30.0)
    try:
        _verify(http, base, factor_id, version, aggregator_public_key, report)
        report.ok = True
    except _Fail as fail:
        report.reason, report.break_seq = fail.reason, fail.seq
    finally:
        if own:
            http.close()
    return report


def _verify(
    http: httpx.Client, base: str, factor_id: str, version: str | None, trusted: str | None, report: VerifyReport
) -> None:
    key, entries = _fetch_log(http, base)
    report.aggregator_public_key = key
    if trusted is not None and key != trusted:
        raise _Fail("the log is signed by another key than the trusted aggregator key")
    if trusted is None:
        report.unverified.append("aggregator identity (key taken from the service itself; pass the trusted key)")
    keys = _get(http, f"{base}/api/v1/members/keys", "member keys")
    member_keys = {str(k["fingerprint"]): str(k["identity_public_key"]) for k in keys}
    report.entries_checked = len(entries)
    broken = translog.verify_chain(entries, key, member_keys)
    if broken is not None:
        raise _Fail(broken.reason, broken.seq)
    report.checks.append(f"hash chain and signatures of {len(entries)} log entries")

    try:
        factor = PublishedFactor.model_validate(
            _get(http, f"{base}/api/v1/factors/{factor_id}", "factor", version=version)
        )
    except ValidationError as exc:
        raise _Fail(f"the served factor is not a valid PublishedFactor: {exc.errors()[0]['msg']}") from None
    report.version = factor.version
    publications = _find(entries, translog.PUBLICATION, factor_id=factor.factor_id, version=factor.version)
    if not publications:
        raise _Fail(f"no publication entry in the log for factor {factor.factor_id} version {factor.version}")
    pub = publications[-1]
    if document_hash(factor) != pub.payload.get("document_hash"):
        raise _Fail(
            f"the served factor document differs from the one logged at seq {pub.seq} (document hash mismatch)", pub.seq
        )
    report.checks.append(f"served factor matches the publication entry at seq {pub.seq}")

    round_id = str(pub.payload.get("round_id"))
    report.round_id = round_id
    specs = [e for e in _find(entries, translog.SPEC_PUBLISHED, round_id=round_id) if e.seq < pub.seq]
    if not specs:
        raise _Fail(f"no spec publication for round {round_id!r} before the factor's publication", pub.seq)
    spec_entry = specs[0]
    try:
        signed = SignedSpec.model_validate_json(str(spec_entry.payload["signed_spec"]))
        spec = verify_spec(signed, key, validate=False)
    except (KeyError, ValidationError, InvalidSignature, ValueError):
        raise _Fail(f"the spec of round {round_id!r} is malformed or not signed by the aggregator", spec_entry.seq) from None
    if spec_hash(spec) != spec_entry.payload.get("spec_hash"):
        raise _Fail("the logged spec hash does not match the signed spec", spec_entry.seq)
    report.checks.append(f"round {round_id!r} spec signed by the aggregator (seq {spec_entry.seq})")

    aggregates = [e for e in _find(entries, translog.AGGREGATE, round_id=round_id) if e.seq < pub.seq]
    if len(aggregates) != 1:
        raise _Fail(f"expected one aggregate entry for round {round_id!r}, found {len(aggregates)}", pub.seq)
    agg = aggregates[0]
    if agg.payload.get("spec_hash") != spec_entry.payload.get("spec_hash"):
        raise _Fail("the aggregate names another spec than the round's", agg.seq)
    try:
        n = int(agg.payload["n"])
        shown = list(agg.payload["summed"])
        withheld = set(agg.payload.get("withheld") or [])
        hashes = list(agg.payload.get("contributions") or [])
        logged_other = agg.payload.get("other_gases")
        other_gases = None if logged_other is None else _decimal(logged_other["sum"])
        logged_merged = None if logged_other is None else [str(g) for g in logged_other["gases"]]
    except (KeyError, TypeError, ValueError):
        raise _Fail("the aggregate entry lacks n, summed or contributions, or its other_gases is malformed", agg.seq) from None
    if spec.protocol == "paillier":
        receipts = [e for e in _find(entries, translog.CONTRIBUTION_RECEIPT, round_id=round_id) if e.seq < agg.seq]
        members = [e.payload.get("member") for e in receipts]
        if len(set(members)) != len(members):
            raise _Fail(f"a member has two contribution receipts in round {round_id!r}", agg.seq)
        if sorted(str(e.payload.get("contribution_hash")) for e in receipts) != sorted(map(str, hashes)) or len(hashes) != n:
            raise _Fail(
                f"the aggregate counts n = {n} contributions, which do not match the {len(receipts)} receipts of round {round_id!r}",
                agg.seq,
            )
        report.checks.append(f"n = {n} matches the round's {len(receipts)} countersigned receipts, one per member")
    if factor.provenance.transparency_log_entry != agg.entry_hash or factor.provenance.round_id != round_id:
        raise _Fail("the factor's provenance does not name the round's aggregate entry", pub.seq)

    slots = vector_layout(spec)
    if len(shown) != len(slots):
        raise _Fail(f"the logged aggregate has {len(shown)} values; the spec's layout has {len(slots)}", agg.seq)
    filled: list[int | None] = []
    first_bin = True
    try:
        for slot, value in zip(slots, shown, strict=True):
            if slot.kind == KIND_HIST and slot.name in withheld:
                filled.append(n if first_bin else 0)  # any histogram summing to n; quantiles are not compared
                first_bin = False
            else:
                filled.append(None if value is None else int(value))
        # The component and gas rules, recomputed from the logged reporter counts: what they cover
        # must be withheld (else the log discloses a few firms' values), and nothing else may be.
        must = set(withheld_slots(spec, filled))
        merged = merged_gases(spec, filled)
    except (AggregationError, TypeError, ValueError) as exc:
        raise _Fail(f"the logged aggregate is malformed: {exc}", agg.seq) from None
    shown_anyway = [s.name for s, v in zip(slots, filled, strict=True) if s.name in must and v is not None]
    if shown_anyway:
        raise _Fail(
            f"the logged aggregate shows slots of components or gases reported by fewer than {spec.min_participants} "
            f"firms, which the disclosure rules withhold: {', '.join(shown_anyway[:5])}",
            agg.seq,
        )
    if (logged_merged or []) != merged:
        raise _Fail(
            f"the logged aggregate merges the gases {logged_merged or []} into {OTHER_GASES!r}, but the gas-level rule "
            f"on the logged reporter counts merges {merged}",
            agg.seq,
        )
    try:
        # refuses a withheld slot the rules do not cover, and a merged sum that contradicts shown slots
        stats = aggregate_statistics(spec, filled, n, other_gases=other_gases)
    except AggregationError as exc:
        raise _Fail(f"the logged aggregate is inconsistent: {exc}", agg.seq) from None
    if not stats.disclosure.publish:
        raise _Fail(f"the logged aggregate fails the disclosure rule {stats.disclosure.rule}; it must not be published", pub.seq)
    try:
        rebuilt = build_factor(
            spec,
            stats,
            factor.version,
            None,
            factor.library_level,
            log_entry_hash=agg.entry_hash,
            now=factor.published_at,
        )
    except (ProtocolError, ValueError) as exc:
        raise _Fail(f"the factor cannot be rebuilt from the logged aggregate: {exc}", pub.seq) from None
    served = factor.model_dump(mode="python")
    expected = rebuilt.model_dump(mode="python")
    expected["provenance"]["supersedes"] = served["provenance"]["supersedes"]  # needs the previous version
    if any(slot.kind == KIND_HIST for slot in slots if slot.name in withheld):
        expected["distribution"]["quantiles"] = served["distribution"]["quantiles"]
        report.unverified.append("distribution.quantiles (the public log withholds the histogram)")
    gas_slots = {f"wF[{g}]" for g in merged}
    if must - gas_slots:
        names = ", ".join(c.name_en for c in stats.withheld)
        report.unverified.append(
            f"withheld components ({names}): reported by fewer than {spec.min_participants} firms, so the log "
            f"withholds their slots ({', '.join(sorted(must - gas_slots))}) and nothing is published about them"
        )
    if merged:
        report.unverified.append(
            f"withheld gases ({', '.join(stats.footprint.withheld_gases)}): emitted by fewer than "
            f"{spec.min_participants} firms, so the log withholds the per-gas sums of {', '.join(merged)} "
            f"({', '.join(sorted(gas_slots))}) and nothing is published about them one by one; their sum, "
            f"published as {OTHER_GASES!r}, was recomputed from the logged other_gases"
        )
    diffs = list(_diff(served, expected))
    if diffs:
        raise _Fail(
            f"the served factor differs from the one recomputed from the logged aggregate: {'; '.join(diffs[:5])}",
            pub.seq,
        )
    report.checks.append("every published number recomputed from the logged aggregate")
