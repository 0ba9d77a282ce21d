"""Delivery of signed factor packages to a receiver (e.g. the national database), with retries and receipts.

A delivery is idempotent by (factor id, version): the ``Idempotency-Key`` header is the same on
every attempt and every later call, and once a receiver has acknowledged a package the stored
receipt is returned without sending it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Literal

import httpx
from pydantic import BaseModel

from aggregator.errors import DeliveryFailed
from aggregator.store import DeliveryRow, Store, utcnow
from keys import identity
from protocols.canonical import Kind, encode

__all__ = [
    "IDEMPOTENCY_HEADER",
    "RETRYABLE_STATUS",
    "DeliveryReceipt",
    "FactorPackage",
    "idempotency_key",
    "package_message",
    "publish_to",
    "sign_package",
]

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


class FactorPackage(BaseModel):
    """A published factor as delivered: the document, its hash and the aggregator's signature."""

    factor_id: str
    version: int
    document: dict[str, Any]
    """The ``PublishedFactor`` JSON."""
    document_hash: str
    """SHA-256 recorded in the transparency log's publication entry."""
    log_seq: int | None = None
    """Sequence number of that publication entry."""
    aggregator_public_key: str
    signature: str
    """Ed25519 over :func:`package_message` by ``aggregator_public_key``."""


class DeliveryReceipt(BaseModel):
    """The outcome of delivering one factor version to one receiver."""

    factor_id: str
    version: int
    url: str
    idempotency_key: str
    status: Literal["delivered", "failed"]
    attempts: int
    status_code: int | None
    receipt: str | None
    """The receiver's response body."""
    updated_at: datetime


def package_message(factor_id: str, version: int, document_hash: str) -> bytes:
    """The bytes a package signature covers: the canonical encoding of id, version and document hash."""
    return encode(Kind.FACTOR_PACKAGE, {"factor_id": factor_id, "version": version, "document_hash": document_hash})


def sign_package(
    key: Any, factor_id: str, version: int, document: dict[str, Any], document_hash: str, log_seq: int | None
) -> FactorPackage:
    """Build a :class:`FactorPackage` signed with the aggregator's identity key."""
    return FactorPackage(
        factor_id=factor_id,
        version=version,
        document=document,
        document_hash=document_hash,
        log_seq=log_seq,
        aggregator_public_key=identity.public_key_b64(key),
        signature=identity.sign(key, package_message(factor_id, version, document_hash)),
    )


def idempotency_key(factor_id: str, version: int) -> str:
    """The ``Idempotency-Key`` of a factor version: the same for every attempt and every call."""
    return f"pcf-factor:{factor_id}:v{version}"


def _receipt(row: DeliveryRow) -> DeliveryReceipt:
    return DeliveryReceipt.model_validate(row, from_attributes=True)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def publish_to(
    url: str,
    factor_package: FactorPackage,
    *,
    store: Store | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    timeout: float = 10.0,
) -> DeliveryReceipt:
    """POST a factor package to ``url``, retrying transient failures with exponential backoff.

    Parameters
    ----------
    url
        The receiver's endpoint.
    factor_package
        The signed package.
    store
        Where receipts are kept; when given, a package already delivered to ``url`` is not sent
        again and the stored receipt is returned.
    client
        HTTP client to use (one is created and closed otherwise).
    sleep
        Called with each backoff delay in seconds; tests pass a recorder.
    max_attempts
        Attempts in total, at least 1.
    base_delay, max_delay
        Delay before retry ``k`` (1-based) is ``min(max_delay, base_delay * 2**(k-1))``, or the
        receiver's numeric ``Retry-After`` when larger.
    timeout
        Per-request timeout in seconds.

    Returns
    -------
    DeliveryReceipt
        With ``status == "delivered"``.

    Raises
    ------
    DeliveryFailed
        The receiver answered a non-retryable status, or every attempt failed; the failed
        receipt is stored first.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts {max_attempts}: accepted is at least 1")
    fid, version = factor_package.factor_id, factor_package.version
    key = idempotency_key(fid, version)
    if store is not None:
        with store.transaction() as tx:
            done = tx.get_delivery(fid, version, url)
            if done is not None and done.status == "delivered":
                return _receipt(done)
    body = factor_package.model_dump_json().encode()
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    status_code: int | None = None
    text: str | None = None
    problem = ""
    attempts = 0
    delivered = False
    try:
        for attempts in range(1, max_attempts + 1):
            wait: float | None = None
            try:
                response = http.post(url, content=body, headers=headers, timeout=timeout)
            except httpx.TransportError as exc:
                status_code, text, problem = None, None, f"{type(exc).__name__}: {exc}"
            else:
                status_code, text = response.status_code, response.text[:10_000]
                if response.is_success:
                    delivered = True
                    break
                problem = f"HTTP {status_code}"
                if status_code not in RETRYABLE_STATUS:
                    break
                wait = _retry_after(response)
            if attempts < max_attempts:
                delay = min(max_delay, base_delay * 2 ** (attempts - 1))
                sleep(max(delay, wait or 0.0))
    finally:
        if own:
            http.close()
    now = utcnow()
    row = DeliveryRow(
        factor_id=fid,
        version=version,
        url=url,
        idempotency_key=key,
        status="delivered" if delivered else "failed",
        attempts=attempts,
        status_code=status_code,
        receipt=text,
        created_at=now,
        updated_at=now,
    )
    if store is not None:
        with store.transaction() as tx:
            row = tx.put_delivery(row)
    receipt = _receipt(row)
    if not delivered:
        err = DeliveryFailed(
            f"delivery of factor {fid!r} version {version} to {url} failed after {attempts} attempt(s): {problem}"
            + (f"; receiver said {json.dumps(text[:300])}" if text else "")
        )
        err.receipt = receipt
        raise err
    return receipt
