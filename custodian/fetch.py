"""What a custodian reads from the aggregator: the whole transparency log and the contribution bodies, nothing it trusts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.auth import sign_request
from protocols.translog import LogEntry, LogPage

__all__ = ["FetchFailed", "fetch_bodies", "fetch_log", "fetch_request"]


class FetchFailed(RuntimeError):
    """The aggregator could not be reached or refused; the message names the URL and the answer."""


def _get(http: httpx.Client, url: str, headers: dict[str, str] | None = None) -> Any:
    try:
        resp = http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code >= 400:
        raise FetchFailed(f"{url}: the aggregator answered {resp.status_code}: {resp.text[:300]}")
    try:
        return resp.json()
    except ValueError:
        raise FetchFailed(f"{url}: the answer is not JSON") from None


def fetch_log(http: httpx.Client, base_url: str) -> list[LogEntry]:
    """Every entry of the aggregator's transparency log, page by page (the page's own key is ignored)."""
    entries: list[LogEntry] = []
    next_seq: int | None = 1
    while next_seq is not None:
        page = LogPage.model_validate(_get(http, f"{base_url.rstrip('/')}/api/v1/log?from_seq={next_seq}&limit=1000"))
        entries.extend(page.entries)
        if page.next_seq is not None and page.next_seq <= next_seq:
            raise FetchFailed(f"{base_url}: the log's next page ({page.next_seq}) does not move forward")
        next_seq = page.next_seq
    return entries


def fetch_request(
    http: httpx.Client, base_url: str, round_id: str, custodian_key: Ed25519PrivateKey
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``GET /rounds/{id}/decryption-request``, asked with a request signed by the custodian key.

    Returns the contribution bodies of the stage the round waits for and, before the values stage,
    every custodian's partial of the dominance stage (``previous_partials``). The request's other
    fields (stage, minimum, key) are not read: the custodian takes them from the log and its share.
    """
    path = f"/api/v1/rounds/{round_id}/decryption-request"
    headers = sign_request(custodian_key, "GET", path, b"", datetime.now(UTC))
    doc = _get(http, base_url.rstrip("/") + path, headers)
    items = doc.get("contributions") if isinstance(doc, dict) else None
    previous = doc.get("previous_partials", []) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise FetchFailed(f"{base_url}{path}: no list of contributions in the answer")
    if not isinstance(previous, list) or not all(isinstance(i, dict) for i in previous):
        raise FetchFailed(f"{base_url}{path}: previous_partials is not a list of partial decryptions")
    return items, previous


def fetch_bodies(http: httpx.Client, base_url: str, round_id: str, custodian_key: Ed25519PrivateKey) -> list[dict[str, Any]]:
    """The contribution bodies of :func:`fetch_request` alone."""
    return fetch_request(http, base_url, round_id, custodian_key)[0]
