"""`pcf keys ...`: identities, TLS material, SuperNode keys and a compose deployment's secrets.

The custodians' commands (key ceremony, partial decryption) are ``pcf custodian ...`` (``custodian.cli``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.table import Table

from keys import identity, tls
from keys.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_EXISTS,
    EXIT_KEY_FILE,
    EXIT_PASSWORD,
    ForceOption,
    JsonOption,
    Refused,
    console,
    fail,
    file_mode,
    kv_table,
    password_from_env,
    print_json,
    refuse_existing,
)
from keys.errors import IdentityError
from keys.files import write_private, write_public

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_EXISTS",
    "EXIT_KEY_FILE",
    "EXIT_PASSWORD",
    "FLEET_PORT",
    "WrittenFile",
    "keys_app",
    "write_deployment",
]

FLEET_PORT = 9092
"""Port of the SuperLink's HTTPS endpoint in the compose deployment (Fleet, Control and Runtime APIs)."""
AGGREGATOR_PORT = 8080
COMPOSE_NODE_SERVICES = 3
"""``compose/compose.yml`` defines this many node services (``node1`` …)."""

keys_app = typer.Typer(help="Identities, TLS material and deployment secrets.", no_args_is_help=True)
identity_app = typer.Typer(help="Ed25519 identities of firms and of the association.", no_args_is_help=True)
keys_app.add_typer(identity_app, name="identity")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class WrittenFile:
    """One file written by a command: where, what it is, who should hold it, and its mode."""

    path: str
    what: str
    holder: str
    mode: str


# =========================================================================== output helpers


def _files_table(title: str, files: Sequence[WrittenFile]) -> Table:
    table = Table(title=title)
    for col in ("file", "what", "held by", "mode"):
        table.add_column(col, overflow="fold")
    for f in files:
        table.add_row(f.path, f.what, f.holder, f.mode)
    return table


def _written(path: Path, what: str, holder: str) -> WrittenFile:
    return WrittenFile(str(path), what, holder, file_mode(path))


# =========================================================================== plain logic


def _write_text(path: Path, text: str, *, private: bool) -> None:
    """Write ``text`` atomically, 0600 when ``private``; callers have refused existing files unless forced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = write_private if private else write_public
    writer(path, text.encode("utf-8"), overwrite=True)


def _check_hosts(hosts: Sequence[str], ips: Sequence[str]) -> list[str]:
    """DNS names and IP addresses for a certificate's SAN, de-duplicated, in order."""
    out: list[str] = []
    for h in hosts:
        try:
            ipaddress.ip_address(h)
        except ValueError:
            if not _HOST.match(h):
                raise Refused(f"--host {h!r}: not a DNS name; accepted: letters, digits, '-' and '.'", EXIT_BAD_INPUT) from None
        if h not in out:
            out.append(h)
    for ip in ips:
        try:
            text = str(ipaddress.ip_address(ip))
        except ValueError:
            raise Refused(f"--ip {ip!r}: not an IPv4 or IPv6 address", EXIT_BAD_INPUT) from None
        if text not in out:
            out.append(text)
    if not out:
        raise Refused("no --host or --ip given; accepted: at least one DNS name or IP address", EXIT_BAD_INPUT)
    return out


def _tls_files(directory: Path) -> tls.TlsFiles:
    return tls.TlsFiles(directory / "ca.crt", directory / "server.pem", directory / "server.key")


def _write_tls(directory: Path, hosts: Sequence[str], *, force: bool,
               aggregator_hosts: Sequence[str] | None = None) -> tls.TlsFiles:
    planned = list(asdict(_tls_files(directory)).values())
    if aggregator_hosts:
        planned += [directory / "aggregator.pem", directory / "aggregator.key"]
    refuse_existing([p for p in planned if p is not None], force)
    return tls.write_tls_files(directory, list(hosts), aggregator_hosts=aggregator_hosts)


def _cert_info(files: tls.TlsFiles) -> dict[str, Any]:
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = [str(n.value) for n in san]
    info: dict[str, Any] = {
        "ca_cert": str(files.ca_cert),
        "server_cert": str(files.server_cert),
        "server_key": str(files.server_key),
        "subject_alt_names": names,
        "not_after": cert.not_valid_after_utc.isoformat(),
        "ca_sha256": hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest(),
    }
    if files.aggregator_cert is not None:
        agg = x509.load_pem_x509_certificate(files.aggregator_cert.read_bytes())
        agg_san = agg.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        info |= {"aggregator_cert": str(files.aggregator_cert), "aggregator_key": str(files.aggregator_key),
                 "aggregator_subject_alt_names": [str(n.value) for n in agg_san]}
    return info


def _check_name(name: str, option: str) -> str:
    if not _NAME.match(name):
        raise Refused(
            f"{option} {name!r}: accepted: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit",
            EXIT_BAD_INPUT,
        )
    return name


def _write_supernode(directory: Path, name: str, *, force: bool) -> tls.SuperNodeAuthKeys:
    _check_name(name, "--name")
    refuse_existing([directory / f"{name}.key", directory / f"{name}.pub"], force)
    return tls.generate_supernode_auth_keys(directory, name)


def _supernode_info(keys: tls.SuperNodeAuthKeys) -> dict[str, Any]:
    public_line = keys.public_key.read_text(encoding="ascii").strip()
    public = serialization.load_ssh_public_key(public_line.encode("ascii"))
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "private_key": str(keys.private_key),
        "public_key_file": str(keys.public_key),
        "public_key": public_line,
        "sha256": hashlib.sha256(der).hexdigest(),
    }


def _write_identity(path: Path, password: bytes | None, *, force: bool) -> dict[str, Any]:
    refuse_existing([path], force)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = identity.generate_identity()
    identity.save_private_key(key, path, password, overwrite=force)
    pub = identity.public_key_b64(key)
    return {"path": str(path), "public_key": pub, "fingerprint": identity.fingerprint(pub), "encrypted": bool(password)}


def _flwr_config(superlink_address: str, root_certificates: str) -> str:
    """The Flower CLI's ``$FLWR_HOME/config.toml`` naming the deployment's SuperLink as the default connection."""
    return (
        "# Flower CLI connection to the data space's SuperLink (flwr supernode register / flwr run).\n"
        '[superlink]\ndefault = "pcf"\n\n'
        f'[superlink.pcf]\naddress = "{superlink_address}"\nroot-certificates = "{root_certificates}"\n'
    )


def _env_text(values: dict[str, str], header: str) -> str:
    return header + "".join(f"{k}={v}\n" for k, v in values.items())


def write_deployment(
    out: str | os.PathLike[str],
    nodes: int = COMPOSE_NODE_SERVICES,
    superlink_hosts: Sequence[str] = ("superlink",),
    aggregator_host: str = "aggregator",
    *,
    force: bool = False,
    uid: int | None = None,
    gid: int | None = None,
    now: dt.datetime | None = None,
) -> list[WrittenFile]:
    """Generate every secret and certificate ``compose/compose.yml`` mounts, plus its ``.env``.

    Layout written under ``out`` (private keys and ``.env`` mode 0600)::

        .env                          association: Postgres password, admin token, PACT client
        roster.json                   the nodes' identity public keys (custodians' roster)
        tls/ca.crt                    everyone: verifies the SuperLink and the aggregator API (nodes pin it)
        tls/server.pem, server.key    SuperLink: its HTTPS certificate (SANs below) and key
        tls/aggregator.pem, .key      aggregator: its API's HTTPS certificate (aggregator_host, loopback)
        aggregator/identity.key       aggregator: Ed25519 signing key
        aggregator/flwr-config.toml   aggregator: Flower CLI connection to the SuperLink
        node<i>/identity.key          firm i: Ed25519 identity key (.pub: its public key)
        node<i>/supernode.key         firm i: SuperNode authentication key (.pub: to register)
        node<i>/node.env              firm i: compose variables for running only node<i> on its own host

    Parameters
    ----------
    out
        Target directory (created if missing).
    nodes
        Number of enterprise nodes ``node1..nodeN`` (≥ 1).
    superlink_hosts
        Names the SuperLink is reached by; the first is the address nodes use. ``superlink``
        (the compose service), ``localhost`` and ``127.0.0.1`` (health check, the SuperLink's own
        runtime) are always added to the certificate.
    aggregator_host
        Name nodes reach the aggregator's HTTPS API by (in its certificate with ``localhost``, ``127.0.0.1``).
    force
        Replace existing files; without it nothing is written if any target exists.
    uid, gid
        User the containers run as (default: the current user, who owns the 0600 files).
    now
        Certificate validity start (tests).

    Returns
    -------
    list[WrittenFile]
        Every file written, in order.
    """
    if nodes < 1:
        raise Refused(f"--nodes {nodes}; accepted: at least 1", EXIT_BAD_INPUT)
    if not superlink_hosts:
        raise Refused("--superlink-host: give at least one name", EXIT_BAD_INPUT)
    sans = _check_hosts([*superlink_hosts, "superlink", "localhost"], ["127.0.0.1"])
    _check_hosts([aggregator_host], [])
    target = Path(out)
    tls_dir, agg_dir = target / "tls", target / "aggregator"
    node_dirs = [target / f"node{i}" for i in range(1, nodes + 1)]
    planned = [
        target / ".env",
        target / "roster.json",
        *(p for p in asdict(_tls_files(tls_dir)).values() if p is not None),
        tls_dir / "aggregator.pem",
        tls_dir / "aggregator.key",
        agg_dir / "identity.key",
        agg_dir / "identity.pub",
        agg_dir / "flwr-config.toml",
    ]
    for d in node_dirs:
        planned += [d / n for n in ("identity.key", "identity.pub", "supernode.key", "supernode.pub", "node.env")]
    refuse_existing(planned, force)

    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    written: list[WrittenFile] = []
    if not target.exists():  # a directory made here holds secrets: owner only
        target.mkdir(parents=True, mode=0o700)

    files = tls.write_tls_files(tls_dir, sans, now=now, aggregator_hosts=[aggregator_host])
    assert files.aggregator_cert is not None and files.aggregator_key is not None
    written += [
        _written(files.ca_cert, "CA certificate: verifies the SuperLink and the aggregator API", "everyone"),
        _written(files.server_cert, f"SuperLink certificate ({', '.join(sans)})", "association (superlink)"),
        _written(files.server_key, "SuperLink TLS private key", "association (superlink)"),
        _written(files.aggregator_cert, f"aggregator API certificate ({', '.join(tls.with_loopback([aggregator_host]))})",
                 "association (aggregator)"),
        _written(files.aggregator_key, "aggregator API TLS private key", "association (aggregator)"),
    ]

    agg = _write_identity(agg_dir / "identity.key", None, force=force)
    _write_text(agg_dir / "identity.pub", agg["public_key"] + "\n", private=False)
    written += [
        _written(agg_dir / "identity.key", "aggregator Ed25519 signing key", "association (aggregator)"),
        _written(agg_dir / "identity.pub", f"aggregator public key ({agg['fingerprint']})", "everyone"),
    ]
    _write_text(agg_dir / "flwr-config.toml", _flwr_config(f"superlink:{FLEET_PORT}", "/secrets/ca.crt"), private=False)
    written.append(_written(agg_dir / "flwr-config.toml", "Flower CLI connection to the SuperLink", "association (aggregator)"))

    superlink_address = f"{superlink_hosts[0]}:{FLEET_PORT}"
    aggregator_url = f"https://{aggregator_host}:{AGGREGATOR_PORT}"
    roster: list[str] = []
    for i, d in enumerate(node_dirs, start=1):
        node = _write_identity(d / "identity.key", None, force=force)
        roster.append(node["public_key"])
        _write_text(d / "identity.pub", node["public_key"] + "\n", private=False)
        sn = _write_supernode(d, "supernode", force=force)
        node_env = _env_text(
            {
                "PCF_UID": str(uid),
                "PCF_GID": str(gid),
                "PCF_SUPERLINK_ADDRESS": superlink_address,
                "PCF_AGGREGATOR_URL": aggregator_url,
                # Compose interpolates the whole file, so the association's required variables need
                # a value even on a host that runs only node{i}. The aggregator refuses these values.
                "POSTGRES_PASSWORD": "unused",
                "PCF_AGG_ADMIN_TOKEN": "unused",
                "PCF_AGG_PACT_CLIENT_ID": "unused",
                "PCF_AGG_PACT_CLIENT_SECRET": "unused",
            },
            f"# node{i} on its own host: docker compose --env-file node{i}/node.env -f compose.yml up -d --no-deps node{i}\n"
            "# The association's variables below are placeholders: their services do not run on this host.\n",
        )
        _write_text(d / "node.env", node_env, private=False)
        written += [
            _written(d / "identity.key", f"node{i} Ed25519 identity key", f"firm {i}"),
            _written(d / "identity.pub", f"node{i} identity public key ({node['fingerprint']})", "everyone"),
            _written(sn.private_key, f"node{i} SuperNode authentication key", f"firm {i}"),
            _written(sn.public_key, f"node{i} SuperNode public key (flwr supernode register)", f"firm {i}, association"),
            _written(d / "node.env", f"node{i} compose variables for its own host", f"firm {i}"),
        ]

    _write_text(target / "roster.json", json.dumps(roster, indent=2) + "\n", private=False)
    written.append(_written(target / "roster.json", "nodes' identity public keys (custodian roster)", "custodians"))

    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    env = _env_text(
        {
            "PCF_UID": str(uid),
            "PCF_GID": str(gid),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
            "PCF_AGG_ADMIN_TOKEN": secrets.token_urlsafe(32),
            "PCF_AGG_PACT_CLIENT_ID": f"pcf-{secrets.token_urlsafe(9)}",
            "PCF_AGG_PACT_CLIENT_SECRET": secrets.token_urlsafe(32),
            "PCF_AGG_PUBLIC_BASE_URL": aggregator_url,
            "PCF_SUPERLINK_ADDRESS": superlink_address,
            "PCF_AGGREGATOR_URL": aggregator_url,
        },
        f"# Written by `pcf keys deployment` at {generated}. Holds the association's secrets: keep it on the\n"
        "# association's host, readable by its owner only. Use: docker compose --env-file THIS -f compose.yml up -d\n",
    )
    _write_text(target / ".env", env, private=True)
    written.append(_written(target / ".env", "Postgres password, admin token, PACT client id/secret", "association"))
    return written


# =========================================================================== identity


@identity_app.command("new")
def identity_new_cmd(
    out: Annotated[Path, typer.Option("--out", help="Key file to write (PKCS#8 PEM, mode 0600).")],
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Encrypt the key with the password in this environment variable.")
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Create an Ed25519 identity key; print its public key and fingerprint."""
    try:
        password = password_from_env(password_env).encode("utf-8") if password_env else None
        info = _write_identity(out, password, force=force)
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except (IdentityError, OSError) as exc:
        raise fail(str(exc), EXIT_KEY_FILE, as_json) from None
    if as_json:
        print_json(info)
    else:
        console.print(kv_table(f"identity written to {out}", info))


@identity_app.command("show")
def identity_show_cmd(
    path: Annotated[Path, typer.Argument(help="An identity key file.")],
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Environment variable holding the key's password.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show an identity's public key and fingerprint (never the private key)."""
    try:
        password = password_from_env(password_env).encode("utf-8") if password_env else None
        key = identity.load_private_key(path, password)
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except IdentityError as exc:
        hint = "" if password_env else " (an encrypted key needs --password-env)"
        raise fail(f"{exc}{hint}", EXIT_KEY_FILE, as_json) from None
    pub = identity.public_key_b64(key)
    info = {
        "path": str(path),
        "public_key": pub,
        "fingerprint": identity.fingerprint(pub),
        "encrypted": password is not None,
        "mode": file_mode(path),
    }
    if as_json:
        print_json(info)
    else:
        console.print(kv_table(str(path), info))


# =========================================================================== TLS and SuperNode keys


@keys_app.command("tls")
def tls_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for ca.crt, server.pem and server.key.")],
    host: Annotated[list[str] | None, typer.Option("--host", help="DNS name of the SuperLink (repeatable).")] = None,
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address of the SuperLink (repeatable).")] = None,
    aggregator_host: Annotated[
        list[str] | None,
        typer.Option("--aggregator-host", help="Name or IP of the aggregator API (repeatable): also writes "
                                               "aggregator.pem/.key from the same CA (localhost, 127.0.0.1 added)."),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Create a CA and a SuperLink server certificate for the given names (all in the SAN).

    With ``--aggregator-host`` the same CA also issues the aggregator API's certificate
    (``PCF_AGG_TLS_CERTFILE`` / ``PCF_AGG_TLS_KEYFILE``); nodes pin ``ca.crt`` at enrolment.
    The CA's private key is not kept: a new server certificate means a new CA.
    """
    try:
        sans = _check_hosts(host or [], ip or [])
        agg_sans = _check_hosts(aggregator_host, []) if aggregator_host else None
        files = _write_tls(out, sans, force=force, aggregator_hosts=agg_sans)
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except (OSError, ValueError) as exc:
        raise fail(f"{out}: {exc}", EXIT_KEY_FILE, as_json) from None
    info = _cert_info(files)
    if as_json:
        print_json(info)
    else:
        console.print(kv_table(f"TLS material in {out}", info))
        console.print("flower-superlink --ssl-ca-certfile ca.crt --ssl-certfile server.pem --ssl-keyfile server.key; "
                      "SuperNodes and the flwr CLI verify with ca.crt", highlight=False)


@keys_app.command("supernode")
def supernode_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for NAME.key and NAME.pub.")],
    name: Annotated[str, typer.Option("--name", help="File name stem, e.g. the node's name.")],
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Create a SuperNode authentication key pair (EC P-384, OpenSSH format).

    NAME.key goes to ``flower-supernode --auth-supernode-private-key``; NAME.pub is what the
    association registers (``flwr supernode register NAME.pub``) and what enrolment sends.
    """
    try:
        keys = _write_supernode(out, name, force=force)
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except (OSError, ValueError) as exc:
        raise fail(f"{out}: {exc}", EXIT_KEY_FILE, as_json) from None
    info = _supernode_info(keys)
    if as_json:
        print_json(info)
    else:
        console.print(kv_table(f"SuperNode key pair {name}", info))


# =========================================================================== deployment


@keys_app.command("deployment")
def deployment_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory the compose file mounts (compose/secrets).")],
    nodes: Annotated[int, typer.Option("--nodes", help="Number of enterprise nodes node1..nodeN.")] = COMPOSE_NODE_SERVICES,
    superlink_host: Annotated[
        list[str] | None,
        typer.Option("--superlink-host", help="Name nodes reach the SuperLink by (repeatable; the first is used)."),
    ] = None,
    aggregator_host: Annotated[str, typer.Option("--aggregator-host", help="Name nodes reach the aggregator by.")] = "aggregator",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Everything compose/compose.yml needs: TLS, aggregator and node keys, SuperNode keys and the .env secrets."""
    try:
        files = write_deployment(out, nodes, superlink_host or ["superlink"], aggregator_host, force=force)
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except (IdentityError, OSError, ValueError) as exc:
        raise fail(f"{out}: {exc}", EXIT_KEY_FILE, as_json) from None
    note = None
    if nodes != COMPOSE_NODE_SERVICES:
        note = (f"compose/compose.yml defines node1..node{COMPOSE_NODE_SERVICES}; "
                f"add or remove node services to match {nodes} node(s)")
    if as_json:
        print_json({"out": str(out), "files": [asdict(f) for f in files], "note": note})
        return
    shown = [WrittenFile(str(Path(f.path).relative_to(out)), f.what, f.holder, f.mode) for f in files]
    console.print(_files_table(f"deployment secrets in {out}", shown))
    if note:
        console.print(f"[yellow]{note}[/yellow]")
    console.print(f"next: docker compose --env-file {out / '.env'} -f compose/compose.yml up -d", highlight=False)
