"""`pcf authority ...`: the membership authority's commands (thin adapters over authority.issuer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from authority import issuer
from authority.errors import AlreadyCertified, NotCertifiable, UnknownSerial
from authority.settings import AuthoritySettings
from authority.store import AuthorityStore
from common.console import JsonOption, fail, kv_table, out, print_json, table
from keys import identity
from keys.errors import IdentityError

__all__ = ["EXIT_ALREADY_CERTIFIED", "EXIT_DATABASE", "EXIT_KEY", "EXIT_NOT_CERTIFIABLE", "EXIT_UNKNOWN_SERIAL",
           "authority_app"]

# Exit codes of the membership authority: 60-69 (see pcf/cli.py for the bands).
EXIT_KEY = 60
"""The authority's signing key is missing or unreadable (run ``pcf authority init``)."""
EXIT_NOT_CERTIFIABLE = 61
"""The USCC (check character), a name or the firm's key is not acceptable."""
EXIT_ALREADY_CERTIFIED = 62
"""The USCC already holds a current certificate, or the key is certified for another firm."""
EXIT_UNKNOWN_SERIAL = 63
EXIT_DATABASE = 64

authority_app = typer.Typer(help="The membership authority: certifies firms' identity keys against their "
                                 "Unified Social Credit Codes (统一社会信用代码).", no_args_is_help=True)

OutOption = Annotated[Path | None, typer.Option("--out", help="Also write the signed document (JSON) to this file.")]


def _settings() -> AuthoritySettings:
    return AuthoritySettings()


def _store(cfg: AuthoritySettings, as_json: bool) -> AuthorityStore:
    from sqlalchemy.exc import SQLAlchemyError

    from authority.migrations import SchemaError

    try:
        return AuthorityStore(cfg.database_url, auto_upgrade=cfg.db_auto_upgrade)
    except (SchemaError, SQLAlchemyError) as exc:
        raise fail(f"cannot open the authority register {cfg.database_url}: {exc}", EXIT_DATABASE, as_json) from None


def _key(cfg: AuthoritySettings, as_json: bool) -> identity.Ed25519PrivateKey:
    if not cfg.key_file.exists():
        raise fail(f"{cfg.key_file}: no authority key; run `pcf authority init`", EXIT_KEY, as_json)
    try:
        return issuer.load_key(cfg.key_file)
    except IdentityError as exc:
        raise fail(str(exc), EXIT_KEY, as_json) from None


def _write(path: Path | None, text: str) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")


def _now() -> datetime:
    return datetime.now(UTC)


@authority_app.command("init")
def init_cmd(as_json: JsonOption = False) -> None:
    """Create the authority's signing key (once) and its register; print the public key nodes pin."""
    cfg = _settings()
    try:
        key, created = issuer.load_or_create_key(cfg.key_file)
    except IdentityError as exc:
        raise fail(str(exc), EXIT_KEY, as_json) from None
    _store(cfg, as_json).close()
    pub = identity.public_key_b64(key)
    info = {"public_key": pub, "key_id": identity.fingerprint(pub), "key_file": str(cfg.key_file),
            "register": cfg.database_url, "created": created}
    if as_json:
        print_json(info)
    else:
        out.print(kv_table("membership authority", info))
        out.print("Publish the public key: nodes pin it (`pcf node enroll --authority-key`), the aggregator too "
                  "(PCF_AGG_AUTHORITY_PUBLIC_KEY).")


@authority_app.command("certify")
def certify_cmd(
    uscc: Annotated[str, typer.Option("--uscc", help="The firm's Unified Social Credit Code (18 characters).")],
    name_zh: Annotated[str, typer.Option("--name-zh", help="Registered legal name in Chinese.")],
    name_en: Annotated[str, typer.Option("--name-en", help="Legal name in English.")],
    key: Annotated[str, typer.Option("--key", help="The firm's identity public key (`pcf node init` prints it).")],
    replace: Annotated[bool, typer.Option("--replace", help="Revoke the firm's current certificate (a new "
                                          "key) and issue this one.")] = False,
    days: Annotated[int | None, typer.Option("--days", min=1, max=3650, help="Validity; default "
                                             "PCF_AUTHORITY_CERTIFICATE_DAYS (365).")] = None,
    out_file: OutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Certify a firm's identity key: checks the USCC's check characters, signs, records; prints the certificate."""
    cfg = _settings()
    signing = _key(cfg, as_json)
    store = _store(cfg, as_json)
    try:
        cert = issuer.certify(store, signing, uscc=uscc, legal_name_zh=name_zh, legal_name_en=name_en,
                              identity_public_key=key.strip(), now=_now(),
                              valid_for=timedelta(days=days or cfg.certificate_days), replace=replace)
    except NotCertifiable as exc:
        raise fail(f"not certified: {exc}", EXIT_NOT_CERTIFIABLE, as_json) from None
    except AlreadyCertified as exc:
        raise fail(f"not certified: {exc}", EXIT_ALREADY_CERTIFIED, as_json) from None
    finally:
        store.close()
    text = cert.model_dump_json(indent=2)
    _write(out_file, text)
    if as_json:
        print_json(cert.model_dump(mode="json"))
    else:
        out.print(kv_table(f"certificate {cert.serial}", cert.summary()))
        if out_file is not None:
            out.print(f"wrote {out_file}: the firm hands it to the aggregator at enrolment "
                      "(`pcf node enroll --certificate`)")


@authority_app.command("revoke")
def revoke_cmd(
    serial: Annotated[str, typer.Argument(help="The certificate's serial.")],
    reason: Annotated[str, typer.Option("--reason", help="Recorded with the revocation.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Revoke a certificate; the next revocation list (`pcf authority crl`) names it."""
    cfg = _settings()
    store = _store(cfg, as_json)
    try:
        row = issuer.revoke(store, serial, _now(), reason)
    except UnknownSerial as exc:
        raise fail(str(exc), EXIT_UNKNOWN_SERIAL, as_json) from None
    finally:
        store.close()
    info = {"serial": row.serial, "uscc": row.uscc, "legal_name_en": row.legal_name_en,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None, "reason": row.revocation_reason}
    if as_json:
        print_json(info)
    else:
        out.print(kv_table("revoked", info))
        out.print("Issue and publish a new revocation list: `pcf authority crl`.")


@authority_app.command("crl")
def crl_cmd(
    days: Annotated[int | None, typer.Option("--days", min=1, max=90, help="When the next list is due; default "
                                             "PCF_AUTHORITY_REVOCATION_LIST_DAYS (7).")] = None,
    out_file: OutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign a new revocation list of every revoked serial; nodes and custodians load it."""
    cfg = _settings()
    signing = _key(cfg, as_json)
    store = _store(cfg, as_json)
    try:
        crl = issuer.issue_revocation_list(store, signing, _now(), timedelta(days=days or cfg.revocation_list_days))
    finally:
        store.close()
    _write(out_file, crl.model_dump_json(indent=2))
    if as_json:
        print_json(crl.model_dump(mode="json"))
    else:
        out.print(kv_table(f"revocation list {crl.number}", {
            "issued_at": crl.issued_at.isoformat(), "next_update": crl.next_update.isoformat(),
            "revoked": crl.revoked or "none"}))


@authority_app.command("show")
def show_cmd(as_json: JsonOption = False) -> None:
    """The authority's public key, every certificate it issued (current, expired, revoked), the latest list."""
    cfg = _settings()
    signing = _key(cfg, as_json)
    store = _store(cfg, as_json)
    try:
        rows = store.certificates()
        crl = issuer.current_revocation_list(store)
    finally:
        store.close()
    now = _now()
    pub = identity.public_key_b64(signing)
    certs: list[dict[str, Any]] = [
        {"serial": r.serial, "uscc": r.uscc, "legal_name_zh": r.legal_name_zh, "legal_name_en": r.legal_name_en,
         "key_fingerprint": identity.fingerprint(r.identity_public_key), "expires_at": r.expires_at.isoformat(),
         "status": "revoked" if r.revoked_at else ("expired" if r.expires_at <= now else "current")}
        for r in rows
    ]
    info = {"public_key": pub, "key_id": identity.fingerprint(pub), "register": cfg.database_url,
            "revocation_list": crl.number if crl else None, "certificates": certs}
    if as_json:
        print_json(info)
        return
    out.print(kv_table("membership authority", {k: v for k, v in info.items() if k != "certificates"}))
    out.print(table(f"certificates ({len(certs)})", ("serial", "USCC", "名称", "name", "key", "expires", "status"),
                    ([c["serial"], c["uscc"], c["legal_name_zh"], c["legal_name_en"], c["key_fingerprint"],
                      c["expires_at"][:10], c["status"]] for c in certs)))


@authority_app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8090,
) -> None:
    """Publish certificates and the revocation list over HTTP (GET only, public)."""
    import uvicorn

    from authority.app import create_app

    uvicorn.run(create_app(_settings()), host=host, port=port, log_level="info")


db_app = typer.Typer(help="The authority register's schema: its revision, upgrades.", no_args_is_help=True)
authority_app.add_typer(db_app, name="db")


def _schema(upgrade: bool, as_json: bool) -> None:
    from authority.migrations import SCHEMA
    from authority.store import make_engine
    from common.schema_cli import schema_command

    schema_command(SCHEMA, make_engine(_settings().database_url), upgrade=upgrade, as_json=as_json,
                   exit_code=EXIT_DATABASE)


@db_app.command("upgrade")
def db_upgrade_cmd(as_json: JsonOption = False) -> None:
    """Upgrade the register to this release's schema."""
    _schema(True, as_json)


@db_app.command("current")
def db_current_cmd(as_json: JsonOption = False) -> None:
    """Print the register's schema revision and whether it is the one this release needs."""
    _schema(False, as_json)
