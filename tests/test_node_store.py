"""The node store's contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lca.errors import ImportFailed
from lca.io.template import read_template
from lca.model import Bundle, Process
from lca.refdata import reference_bundle
from node.service import import_paths
from node.store import NodeStore

EXAMPLE = Path(__file__).resolve().parents[1] / "lca" / "data" / "template" / "pcf_template_example.csv"
UUID = "5f0c2a4e-1b7d-4c58-9d3e-0a1b2c3d4e5f"


def example_bundle() -> Bundle:
    return read_template(EXAMPLE, reference_bundle()).bundle


class StoreContract:
    """Every backend MUST behave the same; subclasses provide the ``store`` fixture."""

    def test_save_then_read_back_every_field(self, store: NodeStore) -> None:
        bundle = example_bundle()
        store.save(bundle, "example", "template", {}, [])
        got = store.get(UUID, kind="process")
        assert got == bundle.processes[UUID]
        assert store.bundle().flows == bundle.flows

    def test_changed_content_becomes_a_new_version_and_the_old_one_stays(self, store: NodeStore) -> None:
        bundle = example_bundle()
        store.save(bundle, "v1", "template", {}, [])
        p = bundle.processes[UUID]
        changed = p.model_copy(update={"exchanges": [e.model_copy(update={"amount": e.amount * 2})
                                                     for e in p.exchanges]})
        b2 = Bundle()
        b2.add(changed)
        _, plan = store.save(b2, "v2", "template", {}, [])
        assert [(ds.version, action) for ds, action in plan] == [("01.00.001", "new-version")]
        assert [v.version for v in store.history(UUID)] == ["01.00.000", "01.00.001"]
        first = store.get(UUID, "01.00.000")
        assert isinstance(first, Process) and first.exchanges[1].amount == 1.925
        latest = store.get(UUID)
        assert isinstance(latest, Process) and latest.exchanges[1].amount == 3.85

    def test_a_higher_imported_version_is_kept(self, store: NodeStore) -> None:
        bundle = example_bundle()
        store.save(bundle, "v1", "template", {}, [])
        p = bundle.processes[UUID].model_copy(update={"version": "02.00.000", "location": "CN-GZ"})
        b2 = Bundle()
        b2.add(p)
        store.save(b2, "v2", "template", {}, [])
        assert [v.version for v in store.history(UUID)] == ["01.00.000", "02.00.000"]

    def test_failed_import_writes_nothing(self, store: NodeStore, tmp_path: Path) -> None:
        bad = tmp_path / "bad.csv"
        bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("13450,kWh", "13450,kWhh"), encoding="utf-8")
        with pytest.raises(ImportFailed):
            import_paths(store, [EXAMPLE, bad])
        assert store.latest_rows("process") == []
        assert [r.source for r in store.imports()] == ["reference data"]

    def test_transaction_rolls_back_on_error(self, store: NodeStore) -> None:
        from node.store import SettingRow

        with pytest.raises(RuntimeError), store.transaction() as s:
            s.add(SettingRow(key="k", value="v"))
            s.flush()
            raise RuntimeError("boom")
        assert store.get_setting("k") is None


    def test_reopening_keeps_every_row_and_changes_no_schema(self, store: NodeStore) -> None:
        from node import migrations

        store.save(example_bundle(), "example", "template", {}, [])
        again = NodeStore(store.url)
        try:
            assert again.notes == [] and migrations.current(again.engine) == migrations.head()
            assert again.get(UUID, kind="process") == store.get(UUID, kind="process")
        finally:
            again.close()


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[NodeStore]:
        s = NodeStore(f"sqlite:///{tmp_path / 'node.db'}")
        yield s
        s.close()


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, fresh_pg_database: str) -> Iterator[NodeStore]:
        s = NodeStore(fresh_pg_database)
        yield s
        s.close()
