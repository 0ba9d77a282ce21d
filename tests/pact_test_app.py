"""A test app: the seed API and PACT routers over an in-memory repository of factors built from real round statistics.

The API tests call it in process (:func:`in_process`, the ASGI app behind an httpx client, no
socket); the tests that prove deployment run it as ``python -m uvicorn pact_test_app:app --app-dir
tests --port N``: :func:`serve` starts it on a free loopback port and stops it by its process id.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from example_round import example_firms, example_flow_uuid, example_spec
from fastapi import FastAPI

from aggregator import factors_api, pact
from protocols.contribution import build_contribution
from protocols.encoding import ring_sum
from protocols.factor import LibraryLevel, PublishedFactor, build_factor
from protocols.spec import (
    Product,
    ReferencePeriod,
    RoundSpec,
)
from protocols.stats import AggregateStatistics, aggregate_statistics

IN_PROCESS_BASE = "http://testserver"
CLIENT_ID = "national-db"
CLIENT_SECRET = "test-secret-0123456789abcdef"
SETTINGS = SimpleNamespace(
    pact_client_id=CLIENT_ID,
    pact_client_secret=CLIENT_SECRET,
    pact_token_lifetime_seconds=600,
    pact_page_size=100,
    pact_company_name="China Nonferrous Metals Industry Association (test)",
    pact_company_ids=["urn:pcf-dataspace:association:test"],
)

CLINKER = Product(
    name_zh="水泥熟料",
    name_en="Cement clinker",
    classification_code="3011",
    reference_flow=example_flow_uuid("cement-clinker"),
)


def round_statistics(spec: RoundSpec) -> AggregateStatistics:
    """The statistics of the example firms' contributions to ``spec``, summed in the ring."""
    firms = example_firms(spec)
    vectors = [build_contribution(spec, f.values, f.weight, f.footprint_by_gas).to_ring() for f in firms]
    return aggregate_statistics(spec, ring_sum(vectors), len(firms))


def build_factors() -> list[PublishedFactor]:
    """Five factor versions: primary aluminium CN (2 versions), CN-YN (regional), CN-GD, and cement clinker CN."""
    out: list[PublishedFactor] = []

    def add(
        spec: RoundSpec, level: LibraryLevel, when: datetime, previous: PublishedFactor | None = None
    ) -> PublishedFactor:
        factor = build_factor(spec, round_statistics(spec), previous=previous, library_level=level, now=when)
        out.append(factor)
        return factor

    period_2023 = ReferencePeriod(start=date(2023, 1, 1), end=date(2023, 12, 31))
    first = add(
        example_spec(round_id="cn-al-2023", reference_period=period_2023), "industry", datetime(2024, 3, 1, tzinfo=UTC)
    )
    add(
        example_spec(round_id="cn-al-2024", electricity_co2_kg_per_kwh=0.55),
        "industry",
        datetime(2025, 3, 1, tzinfo=UTC),
        previous=first,
    )
    add(example_spec(round_id="yn-al-2024", region="CN-YN", electricity_co2_kg_per_kwh=0.1), "regional",
        datetime(2025, 3, 2, tzinfo=UTC))  # fmt: skip
    add(example_spec(round_id="gd-al-2024", region="CN-GD"), "regional", datetime(2025, 3, 3, tzinfo=UTC))
    add(example_spec(round_id="cn-clinker-2024", product=CLINKER), "industry", datetime(2025, 3, 4, tzinfo=UTC))
    return out


class MemoryFactorRepository:
    """A :class:`aggregator.repository.FactorRepository` over a list."""

    def __init__(self, factors: list[PublishedFactor]):
        self._factors = sorted(factors, key=lambda f: (f.factor_id, f.revision))

    def list_factors(
        self, *, latest_only: bool = True, limit: int | None = None, offset: int = 0
    ) -> list[PublishedFactor]:
        rows = self._factors
        if latest_only:
            latest: dict[str, PublishedFactor] = {}
            for f in rows:
                latest[f.factor_id] = f
            rows = list(latest.values())
        rows = rows[offset:]
        return rows[:limit] if limit is not None else rows

    def get_factor(self, factor_id: str, version: int | str | None = None) -> PublishedFactor | None:
        found = self.versions(factor_id)
        if version is None:
            return found[-1] if found else None
        return next((f for f in found if version in (f.revision, f.version)), None)

    def versions(self, factor_id: str) -> list[PublishedFactor]:
        return [f for f in self._factors if f.factor_id == factor_id]

    def cohort_sizes(self, factor_id: str) -> dict[int, int]:
        return {f.revision: f.n_participants for f in self.versions(factor_id)}


FACTORS = build_factors()
REPO = MemoryFactorRepository(FACTORS)
EVENTS: list[Any] = []

app = FastAPI(title="pcf-dataspace factor APIs (test)")
app.include_router(factors_api.router_factory(REPO))
app.include_router(pact.router_factory(REPO, SETTINGS, on_event=lambda event, data: EVENTS.append((event, data))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def in_process(base_url: str = IN_PROCESS_BASE) -> Iterator[Any]:
    """This app in the test process, behind ``httpx.ASGITransport`` (no socket, no server process)."""
    from asgi_client import in_process_client

    with in_process_client(app, base_url) as client:
        yield client


@contextmanager
def serve(timeout: float = 30.0) -> Iterator[str]:
    """Run this app under uvicorn on a free loopback port; yields its base URL, stops it by pid."""
    port = _free_port()
    here = Path(__file__).resolve().parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "pact_test_app:app", "--app-dir", str(here),
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{output}")
            try:
                if httpx.get(f"{base}/openapi.json", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not answer on {base} within {timeout} s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
