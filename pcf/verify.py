"""``pcf verify``: fetch a published factor and the aggregator's transparency log over HTTP and check them.

Needs nothing but the service's public endpoints (``/api/v1/log``, ``/api/v1/members/keys``,
``/api/v1/factors/{id}``) and nothing of the aggregator's code: the checks themselves are
:mod:`protocols.provenance`, so a national database can run them against any aggregator.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from protocols.factor import PublishedFactor
from protocols.provenance import ProvenanceError, VerifyReport, check_chain, check_factor
from protocols.translog import LogEntry, LogPage

__all__ = ["VerifyReport", "verify_factor"]


def _get(client: httpx.Client, url: str, what: str, **params: Any) -> Any:
    try:
        response = client.get(url, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as exc:
        raise ProvenanceError(f"cannot fetch {what} from {url}: {exc}") from None
    if response.status_code != 200:
        raise ProvenanceError(f"{what}: {url} answered HTTP {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError:
        raise ProvenanceError(f"{what}: {url} did not answer JSON") from None


def _fetch_log(client: httpx.Client, base: str) -> tuple[str, list[LogEntry]]:
    entries: list[LogEntry] = []
    key: str | None = None
    next_seq: int | None = 1
    while next_seq is not None:
        try:
            page = LogPage.model_validate(_get(client, f"{base}/api/v1/log", "transparency log", from_seq=next_seq))
        except ValidationError as exc:
            raise ProvenanceError(
                f"transparency log page from seq {next_seq} is malformed: {exc.errors()[0]['msg']}"
            ) from None
        if key is not None and page.aggregator_public_key != key:
            raise ProvenanceError("the log's aggregator key changed between pages", next_seq)
        key = page.aggregator_public_key
        entries.extend(page.entries)
        if page.next_seq is not None and page.next_seq <= next_seq:
            raise ProvenanceError(f"log paging does not advance (next_seq {page.next_seq})", next_seq)
        next_seq = page.next_seq
    assert key is not None
    return key, entries


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
    except ProvenanceError as fail:
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
        raise ProvenanceError("the log is signed by another key than the trusted aggregator key")
    if trusted is None:
        report.unverified.append("aggregator identity (key taken from the service itself; pass the trusted key)")
    keys = _get(http, f"{base}/api/v1/members/keys", "member keys")
    member_keys = {str(k["fingerprint"]): str(k["identity_public_key"]) for k in keys}
    check_chain(entries, key, member_keys, report)
    try:
        factor = PublishedFactor.model_validate(
            _get(http, f"{base}/api/v1/factors/{factor_id}", "factor", version=version)
        )
    except ValidationError as exc:
        raise ProvenanceError(f"the served factor is not a valid PublishedFactor: {exc.errors()[0]['msg']}") from None
    check_factor(entries, key, factor, report)
