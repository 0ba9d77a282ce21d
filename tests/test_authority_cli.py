"""`pcf authority`: key, certification (USCC check characters enforced), revocation, revocation lists, the public app."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asgi_client import in_process_client
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from authority import cli as authority_cli
from authority.app import create_app
from authority.settings import AuthoritySettings
from keys.identity import generate_identity, public_key_b64
from pcf.cli import app
from protocols import certificates as c

runner = CliRunner()
USCC = "91350100M000100Y43"
OTHER = "91330100716105852F"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PCF_AUTHORITY_HOME", str(tmp_path / "authority"))
    return tmp_path / "authority"


def pcf(*args: str) -> tuple[int, Any]:
    result = runner.invoke(app, ["authority", *args, "--json"])
    try:
        return result.exit_code, json.loads(result.stdout)
    except ValueError:
        return result.exit_code, result.output


def certify(key: str, uscc: str = USCC, *extra: str) -> tuple[int, Any]:
    return pcf("certify", "--uscc", uscc, "--name-zh", "示例铝业有限公司", "--name-en", "Example Aluminium Co., Ltd.",
               "--key", key, *extra)


def test_init_creates_the_key_once_and_a_register_of_its_own_role(home: Path) -> None:
    code, first = pcf("init")
    assert code == 0 and first["created"] is True
    code, again = pcf("init")
    assert code == 0 and again["created"] is False and again["public_key"] == first["public_key"]
    assert (home / "authority.pem").stat().st_mode & 0o077 == 0
    tables = set(inspect(create_engine(f"sqlite:///{home / 'authority.db'}")).get_table_names())
    assert {"certificate", "revocation_list", "alembic_version_authority"} <= tables


def test_certify_issues_a_certificate_that_verifies_with_the_published_key(home: Path, tmp_path: Path) -> None:
    _, info = pcf("init")
    firm = public_key_b64(generate_identity())
    code, cert = certify(firm, USCC, "--out", str(tmp_path / "cert.json"))
    assert code == 0
    checked = c.verify_certificate(json.loads((tmp_path / "cert.json").read_text()), info["public_key"],
                                   now=datetime.now(UTC), identity_public_key=firm)
    assert checked.serial == cert["serial"] and checked.uscc == USCC


@pytest.mark.parametrize("bad", ["91350100M000100Y44", "91350100M000100Y4", "91350100M000200Y43", "9135O100M000100Y43"])
def test_a_code_with_a_wrong_check_character_or_shape_is_not_certified(home: Path, bad: str) -> None:
    pcf("init")
    code, out = certify(public_key_b64(generate_identity()), bad)
    assert code == authority_cli.EXIT_NOT_CERTIFIABLE and "not certified" in out["error"]
    assert pcf("show")[1]["certificates"] == []


def test_one_firm_one_current_certificate_and_one_key_one_firm(home: Path) -> None:
    pcf("init")
    first, second = public_key_b64(generate_identity()), public_key_b64(generate_identity())
    assert certify(first)[0] == 0
    code, out = certify(second)
    assert code == authority_cli.EXIT_ALREADY_CERTIFIED and "--replace" in out["error"]
    code, out = certify(first, OTHER)
    assert code == authority_cli.EXIT_ALREADY_CERTIFIED and "one key is one firm" in out["error"]
    code, _ = certify(second, USCC, "--replace")
    assert code == 0
    statuses = sorted(x["status"] for x in pcf("show")[1]["certificates"])
    assert statuses == ["current", "revoked"]


def test_revoke_then_crl_names_the_serial_and_numbers_increase(home: Path, tmp_path: Path) -> None:
    _, info = pcf("init")
    _, cert = certify(public_key_b64(generate_identity()))
    assert pcf("revoke", "0" * 32)[0] == authority_cli.EXIT_UNKNOWN_SERIAL
    code, revoked = pcf("revoke", cert["serial"], "--reason", "licence withdrawn")
    assert code == 0 and revoked["reason"] == "licence withdrawn"
    code, first = pcf("crl", "--out", str(tmp_path / "crl.json"))
    assert code == 0 and first["revoked"] == [cert["serial"]] and first["number"] == 1
    crl = c.verify_revocation_list(json.loads((tmp_path / "crl.json").read_text()), info["public_key"])
    with pytest.raises(c.CertificateRejected) as refused:
        c.verify_certificate(cert, info["public_key"], crl, now=datetime.now(UTC))
    assert refused.value.reason == c.REVOKED
    assert pcf("crl")[1]["number"] == 2


def test_commands_without_a_key_say_to_run_init(home: Path) -> None:
    code, out = certify(public_key_b64(generate_identity()))
    assert code == authority_cli.EXIT_KEY and "pcf authority init" in out["error"]


def test_the_public_app_serves_certificates_and_the_list_read_only(home: Path) -> None:
    _, info = pcf("init")
    _, cert = certify(public_key_b64(generate_identity()))
    settings = AuthoritySettings()
    with in_process_client(create_app(settings), "http://authority.test") as http:
        assert http.get("/api/v1/revocation-list").status_code == 404
        pcf("crl")
        assert http.get("/api/v1/authority").json()["public_key"] == info["public_key"]
        assert http.get(f"/api/v1/certificates/{cert['serial']}").json() == cert
        assert http.get("/api/v1/certificates", params={"uscc": USCC}).json() == [cert]
        assert http.get("/api/v1/revocation-list").json()["number"] == 1
        assert http.request("POST", "/api/v1/certificates", json=cert).status_code == 405


def test_the_migrations_build_exactly_the_tables_the_store_declares(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from authority import migrations
    from authority.store import AuthorityStore, authority_metadata

    store = AuthorityStore(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert migrations.current(store.engine) == migrations.head() == "0001"
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "version_table": migrations.VERSION_TABLE})
            assert list(compare_metadata(ctx, authority_metadata)) == []
    finally:
        store.close()


def test_a_node_or_aggregator_database_is_refused_as_a_register(tmp_path: Path) -> None:
    from authority.migrations import SchemaError
    from authority.store import AuthorityStore
    from node.store import NodeStore

    NodeStore(f"sqlite:///{tmp_path / 'node.db'}").close()
    with pytest.raises(SchemaError, match="node database"):
        AuthorityStore(f"sqlite:///{tmp_path / 'node.db'}")


def test_a_node_loads_the_authoritys_revocation_list_only_with_the_pinned_key(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from node.cohort import pin_authority_key, revocation_list
    from node.store import NodeStore

    _, info = pcf("init")
    pcf("crl", "--out", str(tmp_path / "crl.json"))
    url = f"sqlite:///{tmp_path / 'node.db'}"
    monkeypatch.setenv("PCF_NODE_HOME", str(tmp_path / "node"))
    result = runner.invoke(app, ["node", "crl", str(tmp_path / "crl.json"), "--db", url, "--json"])
    assert result.exit_code == 13 and "no membership authority key pinned" in result.stdout
    store = NodeStore(url)
    pin_authority_key(store, info["public_key"])
    store.close()
    result = runner.invoke(app, ["node", "crl", str(tmp_path / "crl.json"), "--db", url, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["number"] == 1
    store = NodeStore(url)
    held = revocation_list(store)
    store.close()
    assert held is not None and held.number == 1


def test_db_upgrade_and_current_report_the_registers_revision(home: Path) -> None:
    code, up = pcf("db", "upgrade")
    assert code == 0 and up["revision"] == up["head"] == "0001"
    code, now = pcf("db", "current")
    assert code == 0 and now["up_to_date"] is True
