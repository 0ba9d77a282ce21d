"""Shared fixtures: paths to the real data, a real PostgreSQL server when the machine has one."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / "tests" / "data"
TIANGONG = SHARED_DATA / "tiangong_sample" / "ILCD"
TIANGONG_ZIP = SHARED_DATA / "tiangong_sample" / "tiangong_sample_ilcd.zip"
USLCI = SHARED_DATA / "uslci_jsonld_v1_sample"
GWP_CSV = SHARED_DATA / "globalwarmingpotentials.csv"

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on a loopback port, for the store contract tests.

    Started with initdb/pg_ctl in a temporary directory (as the ``postgres`` user when the
    tests run as root, since PostgreSQL refuses to run as root) and stopped at the end.
    """
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl not found); .ci/run installs it")
    base = Path(tempfile.mkdtemp(prefix="pcf-pg-"))
    data = base / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "pcf", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60",
         "-o", f"-k {base} -p {port} -h 127.0.0.1", "start"],
        check=True,
        capture_output=True,
    )
    try:
        url = f"postgresql://pcf@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield url
    finally:
        # stopping is best effort: the server may already be gone
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fresh_pg_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL server."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
