"""Each role's schema migrations: release 0.1 databases upgrade keeping every row, fresh ones match the models."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from aggregator import migrations as agg_migrations
from aggregator.store import MemberRow, TranslogRow, aggregator_metadata, make_engine, open_store
from aggregator.translog import row_to_entry
from node import migrations as node_migrations
from node.service import import_paths
from node.store import NodeStore, node_metadata
from node.store import make_engine as make_node_engine
from pcf.cli import app
from protocols.translog import verify_chain

REPO = Path(__file__).resolve().parents[1]
RELEASE_0_1 = REPO / "tests" / "data" / "release-0.1"
EXAMPLE = REPO / "lca" / "data" / "template" / "pcf_template_example.csv"
AGGREGATOR_PUBLIC_KEY_0_1 = "cu7yOBl9qKbohzuJiLdFAmCkwBqdjsJrSw-QedaryIQ"
"""The demo aggregator's key that signed the log in ``aggregator.db`` (also in ``node.db``'s settings)."""

NODE_TABLES = set(node_migrations.RELEASE_0_1_TABLES)
AGG_TABLES = set(agg_migrations.RELEASE_0_1_TABLES)
AGG_TABLES_HEAD = AGG_TABLES | {"factor_cohort"}
"""The aggregator's tables at the head revision (``contribution.stage``, ``partial_decryption.stage``: revision 0006)."""
PRIMARY_KEYS = {"node_setting": "key", "invitation": "round_id", "round": "id", "aggregate": "round_id",
                "translog_entry": "seq", "seen_request": "signature"}
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copyfile(RELEASE_0_1 / name, target)
    return target


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def dump(db: Path, names: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of the named tables, ordered by primary key."""
    out: dict[str, list[dict[str, Any]]] = {}
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        for t in sorted(names):
            key = PRIMARY_KEYS.get(t, "id")
            out[t] = [dict(r) for r in conn.execute(f'SELECT * FROM "{t}" ORDER BY "{key}"')]
    return out


def same_rows(before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]) -> None:
    """Every row is still there with every old column's value (new columns may be added)."""
    assert before.keys() == after.keys()
    for t, rows in before.items():
        assert len(after[t]) == len(rows), t
        for old, new in zip(rows, after[t], strict=True):
            assert {k: new[k] for k in old} == old, t


def schema_diff(engine: sa.Engine, metadata: sa.MetaData, version_table: str) -> list[Any]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": version_table})
        return list(compare_metadata(ctx, metadata))


# -- release 0.1 node databases ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["node.db", "node-with-aggregator-tables.db"])
def test_release_0_1_node_database_upgrades_keeping_every_row(name: str, tmp_path: Path) -> None:
    db = copy_fixture(name, tmp_path)
    before = dump(db, NODE_TABLES)
    assert sum(len(r) for r in before.values()) > 30

    store = NodeStore(f"sqlite:///{db}")
    try:
        assert "a release 0.1 database (no version table): stamped revision 0001" in store.notes
        assert node_migrations.current(store.engine) == node_migrations.head()
        assert schema_diff(store.engine, node_metadata, node_migrations.VERSION_TABLE) == []
        n_processes = len(store.latest_rows("process"))
        import_paths(store, [EXAMPLE])  # new rows after the upgrade
        assert store.get("5f0c2a4e-1b7d-4c58-9d3e-0a1b2c3d4e5f", kind="process") is not None
    finally:
        store.close()

    assert tables(db) == NODE_TABLES | {node_migrations.VERSION_TABLE}  # the empty aggregator tables are gone
    after = dump(db, NODE_TABLES)
    grown = {t for t in NODE_TABLES if len(after[t]) != len(before[t])}
    assert grown <= {"import_record", "dataset_version", "exchange"}
    for t in NODE_TABLES:
        after[t] = after[t][: len(before[t])]
    same_rows(before, after)
    assert n_processes >= 1


def test_aggregator_tables_holding_rows_are_kept_in_a_node_database_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = copy_fixture("node-with-aggregator-tables.db", tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO seen_request VALUES ('sig', 'fp', '2025-01-01 00:00:00')")

    store = NodeStore(f"sqlite:///{db}")
    store.close()

    kept = [n for n in store.notes if n.startswith("kept")]
    assert len(kept) == 1 and "'seen_request'" in kept[0] and "1 row(s)" in kept[0]
    assert "seen_request" in caplog.text
    assert tables(db) == NODE_TABLES | {node_migrations.VERSION_TABLE, "seen_request"}


# -- release 0.1 aggregator databases ----------------------------------------------------------


def test_release_0_1_aggregator_database_upgrades_and_its_log_still_verifies(tmp_path: Path) -> None:
    db = copy_fixture("aggregator.db", tmp_path)
    before = dump(db, AGG_TABLES)
    assert len(before["translog_entry"]) == 4 and len(before["member"]) == 3

    store = open_store(f"sqlite:///{db}")
    try:
        assert agg_migrations.current(store.engine) == agg_migrations.head()
        assert schema_diff(store.engine, aggregator_metadata, agg_migrations.VERSION_TABLE) == []
        with store.transaction() as tx:
            rows = tx.list_log()
            members = {m.fingerprint: m.identity_public_key for m in tx.list_members()}
        assert [r.format for r in rows] == [0, 0, 0, 0]
        assert verify_chain([row_to_entry(r) for r in rows], AGGREGATOR_PUBLIC_KEY_0_1, members) is None
        with store.transaction() as tx:  # new rows after the upgrade: a member, a log row of the new format
            tx.add_member(MemberRow(fingerprint="new", org_name_zh="新", org_name_en="New", identity_public_key="k",
                                    supernode_public_key="s", created_at=T0, updated_at=T0))
            tx.add_log_entry(TranslogRow(seq=5, prev_hash=rows[-1].entry_hash, entry_type="abort", payload="{}",
                                         entry_hash="e5", signature="s5", created_at=T0))
        with store.transaction() as tx:
            assert [r.format for r in tx.list_log()] == [0, 0, 0, 0, 1]
    finally:
        store.close()

    assert tables(db) == AGG_TABLES_HEAD | {agg_migrations.VERSION_TABLE}
    after = dump(db, AGG_TABLES)
    after["member"], after["translog_entry"] = after["member"][:3], after["translog_entry"][:4]
    same_rows(before, after)
    with sqlite3.connect(db) as conn:  # a row written without the ORM gets the new format too
        conn.execute("INSERT INTO translog_entry (seq, prev_hash, entry_type, payload, entry_hash, signature, "
                     "created_at) VALUES (6, 'e5', 'abort', '{}', 'e6', 's6', '2026-12-01 12:00:00')")
        assert conn.execute("SELECT format FROM translog_entry WHERE seq = 6").fetchone() == (1,)


def test_release_0_1_aggregator_database_patched_by_add_missing_columns_gets_its_unique_constraint(
    tmp_path: Path,
) -> None:
    db = copy_fixture("aggregator-patched.db", tmp_path)
    before = dump(db, AGG_TABLES)

    store = open_store(f"sqlite:///{db}")
    try:
        assert any("unique constraint on member.flower_node_id" in n for n in store.notes)
        assert schema_diff(store.engine, aggregator_metadata, agg_migrations.VERSION_TABLE) == []
        with store.transaction() as tx:
            m1, m2 = tx.list_members()
            assert (m1.flower_node_id, m2.flower_node_id) == ("18446744073709551557", None)
        from aggregator.errors import Conflict

        with pytest.raises(Conflict, match="already belongs to another member"), store.transaction() as tx:
            tx.set_member_status(2, "approved", T0, flower_node_id="18446744073709551557")
    finally:
        store.close()
    assert tables(db) == AGG_TABLES_HEAD | {agg_migrations.VERSION_TABLE}  # its empty node tables are gone
    same_rows(before, dump(db, AGG_TABLES))


def test_patched_database_whose_members_share_a_node_id_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    db = copy_fixture("aggregator-patched.db", tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE member SET flower_node_id = '18446744073709551557' WHERE id = 2")
    before = tables(db)

    with pytest.raises(agg_migrations.SchemaError, match="members share a Flower node id"):
        open_store(f"sqlite:///{db}")

    assert tables(db) == before  # nothing half-done: the whole upgrade is one transaction


# -- fresh databases: the migrations make exactly the models' tables -----------------------------


def test_fresh_sqlite_databases_get_exactly_the_models_tables(tmp_path: Path) -> None:
    node = NodeStore(f"sqlite:///{tmp_path / 'node.db'}")
    agg = open_store(f"sqlite:///{tmp_path / 'agg.db'}")
    try:
        assert schema_diff(node.engine, node_metadata, node_migrations.VERSION_TABLE) == []
        assert schema_diff(agg.engine, aggregator_metadata, agg_migrations.VERSION_TABLE) == []
    finally:
        node.close()
        agg.close()
    assert tables(tmp_path / "node.db") == NODE_TABLES | {node_migrations.VERSION_TABLE}
    assert tables(tmp_path / "agg.db") == AGG_TABLES_HEAD | {agg_migrations.VERSION_TABLE}


def test_in_memory_aggregator_store_is_migrated() -> None:
    store = open_store("sqlite://")
    try:
        assert agg_migrations.current(store.engine) == agg_migrations.head()
        with store.transaction() as tx:
            assert tx.list_members() == []
    finally:
        store.close()


@pytest.mark.parametrize("role", ["node", "aggregator"])
def test_fresh_postgres_database_gets_exactly_the_models_tables(role: str, fresh_pg_database: str) -> None:
    if role == "node":
        store: Any = NodeStore(fresh_pg_database)
        metadata, version_table, expected = node_metadata, node_migrations.VERSION_TABLE, NODE_TABLES
    else:
        store = open_store(fresh_pg_database)
        metadata, version_table, expected = aggregator_metadata, agg_migrations.VERSION_TABLE, AGG_TABLES_HEAD
    try:
        assert schema_diff(store.engine, metadata, version_table) == []
        assert set(sa.inspect(store.engine).get_table_names()) == expected | {version_table}
    finally:
        store.close()


def test_release_0_1_aggregator_schema_on_postgres_is_adopted_and_upgraded(fresh_pg_database: str) -> None:
    # Revision 0001 is the 0.1 schema: build it, drop the version table, and it is a 0.1 database.
    engine = make_engine(fresh_pg_database)
    with engine.begin() as conn:
        command.upgrade(agg_migrations.alembic_config(conn), "0001")
        conn.execute(sa.text(f"DROP TABLE {agg_migrations.VERSION_TABLE}"))
        conn.execute(sa.text("INSERT INTO translog_entry VALUES (1, :z, 'abort', '{}', 'h1', 's1', now())"),
                     {"z": "0" * 64})
        conn.execute(sa.text("CREATE TABLE node_setting (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"))
    assert agg_migrations.current(engine) == "release-0.1"
    engine.dispose()

    store = open_store(fresh_pg_database, auto_upgrade=True)
    try:
        with store.transaction() as tx:
            assert [(r.entry_hash, r.format) for r in tx.list_log()] == [("h1", 0)]
        assert schema_diff(store.engine, aggregator_metadata, agg_migrations.VERSION_TABLE) == []
        assert "node_setting" not in sa.inspect(store.engine).get_table_names()
    finally:
        store.close()


def test_postgres_database_behind_is_refused_when_auto_upgrade_is_off(fresh_pg_database: str) -> None:
    with pytest.raises(node_migrations.SchemaError, match="pcf node db upgrade"):
        NodeStore(fresh_pg_database, auto_upgrade=False)
    with pytest.raises(agg_migrations.SchemaError, match="pcf agg db upgrade"):
        open_store(fresh_pg_database, auto_upgrade=False)


# -- one schema per role -------------------------------------------------------------------------


def run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_node_store_in_a_process_that_imported_the_aggregator_store_has_only_node_tables(tmp_path: Path) -> None:
    run_python(f"import aggregator.store\nfrom node.store import NodeStore\nNodeStore('sqlite:///{tmp_path}/n.db')")
    assert tables(tmp_path / "n.db") == NODE_TABLES | {node_migrations.VERSION_TABLE}


def test_aggregator_store_in_a_process_that_imported_the_node_store_has_only_its_tables(tmp_path: Path) -> None:
    run_python(f"import node.store\nfrom aggregator.store import open_store\nopen_store('sqlite:///{tmp_path}/a.db')")
    assert tables(tmp_path / "a.db") == AGG_TABLES_HEAD | {agg_migrations.VERSION_TABLE}


def test_a_role_refuses_the_other_roles_database(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path / 'agg.db'}").close()
    NodeStore(f"sqlite:///{tmp_path / 'node.db'}").close()
    with pytest.raises(node_migrations.SchemaError, match="is an aggregator database"):
        NodeStore(f"sqlite:///{tmp_path / 'agg.db'}")
    with pytest.raises(agg_migrations.SchemaError, match="is a node database"):
        open_store(f"sqlite:///{tmp_path / 'node.db'}")
    with pytest.raises(node_migrations.SchemaError, match="holds another role's tables and none of the node's"):
        NodeStore(f"sqlite:///{copy_fixture('aggregator.db', tmp_path)}")


# -- commands ----------------------------------------------------------------------------------

runner = CliRunner()


def pcf(*args: str) -> tuple[int, Any, str]:
    result = runner.invoke(app, list(args))
    try:
        return result.exit_code, json.loads(result.stdout), result.stderr
    except json.JSONDecodeError:
        return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(("role", "fixture", "head"), [
    ("node", "node.db", node_migrations.head), ("agg", "aggregator.db", agg_migrations.head)])
def test_db_current_then_upgrade_of_a_release_0_1_database(
    role: str, fixture: str, head: Callable[[], str], tmp_path: Path
) -> None:
    url = f"sqlite:///{copy_fixture(fixture, tmp_path)}"
    code, out, _ = pcf(role, "db", "current", "--db", url, "--json")
    assert code == 0 and out["revision"] == "release-0.1" and not out["up_to_date"]

    code, out, _ = pcf(role, "db", "upgrade", "--db", url, "--json")
    assert code == 0 and out["from"] == "release-0.1" and out["revision"] == head()

    code, out, _ = pcf(role, "db", "current", "--db", url)
    assert code == 0 and f"revision {head()} (up to date)" in out


def test_db_commands_name_the_error_without_a_traceback(tmp_path: Path) -> None:
    agg_url = f"sqlite:///{copy_fixture('aggregator.db', tmp_path)}"
    open_store(agg_url).close()
    code, out, err = pcf("node", "db", "upgrade", "--db", agg_url)
    assert code == 14 and "is an aggregator database" in err and "Traceback" not in out + err
    code, out, err = pcf("node", "list", "--db", agg_url)
    assert code == 14 and "is an aggregator database" in err
    code, out, err = pcf("agg", "db", "current", "--db", "mysql://x@y/z")
    assert code == 28 and "accepted are" in err and "Traceback" not in out + err


def test_node_db_upgrade_reads_the_database_from_the_node_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PCF_NODE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PCF_HOME", str(tmp_path / "old-home"))
    code, out, _ = pcf("node", "db", "upgrade", "--json")
    assert code == 0 and out["database"] == f"sqlite:///{tmp_path / 'home' / 'node.db'}"
    monkeypatch.setenv("PCF_DB", f"sqlite:///{tmp_path / 'legacy.db'}")
    code, out, _ = pcf("node", "db", "current", "--json")
    assert code == 0 and out["database"] == f"sqlite:///{tmp_path / 'legacy.db'}" and out["revision"] is None


def test_node_settings_read_pcf_node_names_and_the_release_0_1_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from node.settings import NodeSettings

    monkeypatch.setenv("PCF_HOME", "/srv/old")
    monkeypatch.setenv("PCF_DB", "sqlite:////srv/old.db")
    old = NodeSettings()
    assert old.home == Path("/srv/old") and old.database_url == "sqlite:////srv/old.db" and old.db_auto_upgrade
    monkeypatch.setenv("PCF_NODE_HOME", "~/node")
    monkeypatch.delenv("PCF_DB")
    monkeypatch.setenv("PCF_NODE_DB_AUTO_UPGRADE", "false")
    new = NodeSettings()
    assert new.home == Path("~/node").expanduser() and new.database_url.endswith("/node/node.db")
    assert not new.db_auto_upgrade


def test_migration_engine_helpers_leave_foreign_keys_on(tmp_path: Path) -> None:
    engine = make_node_engine(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        node_migrations.upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()


def test_agg_serve_refuses_a_database_it_cannot_use_with_a_named_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_db = tmp_path / "node.db"
    NodeStore(f"sqlite:///{node_db}").close()
    monkeypatch.setenv("PCF_AGG_ENVIRONMENT", "development")
    monkeypatch.setenv("PCF_AGG_ADMIN_TOKEN", "t")
    monkeypatch.setenv("PCF_AGG_PACT_CLIENT_SECRET", "s")
    monkeypatch.setenv("PCF_AGG_HOME", str(tmp_path))
    monkeypatch.setenv("PCF_AGG_DB_URL", f"sqlite:///{node_db}")
    monkeypatch.setenv("PCF_AGG_INSECURE_HTTP", "true")  # past the TLS check, to the database one

    code, out, err = pcf("agg", "serve", "--port", "1")

    assert code == 28 and "is a node database" in err and "Traceback" not in out + err
