"""`pcf custodian ...`: the Paillier key ceremony, a custodian's partial decryption, and what a share holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from custodian.ceremony import CEREMONY_MIN_KEY_BITS, ceremony_files, custodian_init
from custodian.decrypt import custodian_decrypt
from custodian.errors import CustodianKeyError
from custodian.store import ledger_path, read_ledger, read_share_header
from keys import identity
from keys.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_KEY_FILE,
    EXIT_REFUSED,
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
from keys.files import write_public
from protocols.paillier import (
    MIN_PASSWORD_LENGTH,
    SHARE_FORMAT,
    CustodianRefused,
    KeyShareError,
    MalformedMessage,
    SplitPublicKey,
)

__all__ = ["custodian_app", "read_roster"]

custodian_app = typer.Typer(help="Paillier key ceremony and custodians' partial decryptions.", no_args_is_help=True)

_PASSWORD_HINT = f"at least {MIN_PASSWORD_LENGTH} characters for custodian shares"


def _password(var: str) -> str:
    return password_from_env(var, hint=_PASSWORD_HINT)


def read_roster(path: Path) -> list[str]:
    """Member public keys from a custodian's roster file.

    Accepted: a JSON list whose items are base64url Ed25519 public keys or objects with an
    ``identity_public_key`` (as ``GET /api/v1/members/keys`` serves them; ``revoked`` ones are
    skipped), a JSON object with such a list under ``"roster"``, or plain text with one key per line
    (``#`` starts a comment).

    Raises
    ------
    Refused
        The file is missing or an entry is not a 32-byte base64url key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Refused(f"{path}: cannot read the roster: {exc.strerror}", EXIT_BAD_INPUT) from None
    items: list[Any]
    try:
        doc = json.loads(text)
    except ValueError:
        items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        items = [i for i in items if i]
    else:
        if isinstance(doc, dict) and isinstance(doc.get("roster"), list):
            doc = doc["roster"]
        if not isinstance(doc, list):
            raise Refused(
                f"{path}: a JSON {type(doc).__name__}; accepted: a list of keys or of objects with identity_public_key",
                EXIT_BAD_INPUT,
            )
        items = doc
    keys: list[str] = []
    for k, item in enumerate(items):
        if isinstance(item, dict):
            if item.get("status") == "revoked":
                continue
            item = item.get("identity_public_key")
        if not isinstance(item, str):
            raise Refused(f"{path}: entry {k} is {item!r}; accepted: a base64url Ed25519 public key", EXIT_BAD_INPUT)
        try:
            identity.load_public_key_b64(item)
        except IdentityError as exc:
            raise Refused(f"{path}: entry {k}: {exc}", EXIT_BAD_INPUT) from None
        keys.append(item)
    if not keys:
        raise Refused(f"{path}: the roster lists no member key", EXIT_BAD_INPUT)
    return keys


@custodian_app.command("init")
def custodian_init_cmd(
    out: Annotated[Path, typer.Option("--out", help="Ceremony directory (created if missing).")],
    custodians: Annotated[int, typer.Option("--custodians", help="Number of custodians (all are needed to decrypt).")],
    bits: Annotated[int, typer.Option("--bits", help="Paillier modulus size.")] = CEREMONY_MIN_KEY_BITS,
    password_env: Annotated[
        list[str] | None,
        typer.Option("--password-env", help="One per custodian, in order: environment variable holding its password. "
                     "Without it, each custodian types theirs."),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Key ceremony: a split Paillier key, its public key file and one password-protected share per custodian."""
    try:
        if custodians < 2:
            raise Refused(f"--custodians {custodians}; accepted: at least 2", EXIT_BAD_INPUT)
        if password_env:
            if len(password_env) != custodians:
                raise Refused(
                    f"--password-env given {len(password_env)} time(s); expected once per custodian ({custodians})",
                    EXIT_BAD_INPUT,
                )
            passwords = [_password(v) for v in password_env]
        else:
            passwords = [
                typer.prompt(f"password of custodian {i}", hide_input=True, confirmation_prompt=True, err=True)
                for i in range(custodians)
            ]
        public_path, share_paths = ceremony_files(out, custodians)
        files = [public_path, *share_paths]
        refuse_existing(files, force)
        if force:  # the ceremony writes only into a clean directory; an old share's ledger goes too
            for p in files:
                p.unlink(missing_ok=True)
                ledger_path(p).unlink(missing_ok=True)
        if as_json:
            result = custodian_init(out, custodians, bits, passwords=passwords)
        else:
            with console.status(f"generating a {bits}-bit Paillier key for {custodians} custodians…"):
                result = custodian_init(out, custodians, bits, passwords=passwords)
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except KeyShareError as exc:
        raise fail(str(exc), EXIT_KEY_FILE, as_json) from None
    info = {
        "key_id": result.key_id,
        "bits": bits,
        "public_key": str(result.public_key_path),
        "shares": [str(p) for p in result.share_paths],
    }
    if as_json:
        print_json(info)
    else:
        console.print(kv_table(f"Paillier key {result.key_id[:16]}", info))
        console.print("Each custodian takes their share away; then wipe this directory (keep the public key).")


@custodian_app.command("decrypt")
def custodian_decrypt_cmd(
    share: Annotated[Path, typer.Option("--share", help="This custodian's share file.")],
    request: Annotated[Path, typer.Option("--request", help="The round's decryption request (JSON from the aggregator).")],
    roster: Annotated[Path, typer.Option("--roster", help="The custodian's own list of member public keys.")],
    min_participants: Annotated[int, typer.Option("--min-participants", help="Fewest distinct members to reveal a sum of.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed partial decryption (JSON).")],
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Environment variable holding the share's password.")
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Answer a decryption request with this custodian's signed partial decryption, or refuse."""
    try:
        refuse_existing([out], force)
        members = read_roster(roster)
        try:
            request_json = request.read_text(encoding="utf-8")
        except OSError as exc:
            raise Refused(f"{request}: cannot read the request: {exc.strerror}", EXIT_BAD_INPUT) from None
        password = (
            _password(password_env)
            if password_env
            else typer.prompt(f"password of {share.name}", hide_input=True, err=True)
        )
        partial = custodian_decrypt(share, password, request_json, roster=members, min_participants=min_participants)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_public(out, (partial + "\n").encode("utf-8"), overwrite=True)
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except CustodianRefused as exc:
        raise fail(f"refused: {exc}", EXIT_REFUSED, as_json) from None
    except MalformedMessage as exc:
        raise fail(f"{request}: {exc}", EXIT_BAD_INPUT, as_json) from None
    except KeyShareError as exc:
        raise fail(str(exc), EXIT_KEY_FILE, as_json) from None
    doc = json.loads(partial)
    info = {
        "out": str(out),
        "round_id": doc["round_id"],
        "key_id": doc["key_id"],
        "custodian_index": doc["custodian_index"],
        "contributions": len(doc["contribution_digests"]),
        "ledger": str(ledger_path(share)),
    }
    if as_json:
        print_json(info)
    else:
        console.print(kv_table(f"partial decryption of round {doc['round_id']}", info))


def _show_share(path: Path) -> dict[str, Any]:
    header = read_share_header(path)
    public: SplitPublicKey = header["public_key"]
    index = header["custodian_index"]
    info: dict[str, Any] = {
        "kind": "share",
        "key_id": public.key_id,
        "bits": public.bits,
        "custodians": len(public.custodians),
        "custodian_index": index,
    }
    if 0 <= index < len(public.custodians):
        info["signing_public_key"] = public.custodians[index]
    info["kdf"] = str(header["kdf"].get("name"))
    info["mode"] = file_mode(path)
    try:
        info["decrypted_rounds"] = sorted(read_ledger(ledger_path(path)))
    except CustodianKeyError:
        info["decrypted_rounds"] = f"{ledger_path(path)}: unreadable ledger"
    return info


@custodian_app.command("show")
def custodian_show_cmd(
    path: Annotated[Path, typer.Argument(help="A share file or the ceremony's paillier_public_key.json.")],
    as_json: JsonOption = False,
) -> None:
    """Show the public part of a share (index, key, ledger) or of a public key file; no password needed."""
    try:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise Refused(f"{path}: cannot read: {exc.strerror}", EXIT_KEY_FILE) from None
        except ValueError:
            raise Refused(f"{path}: not JSON; accepted: a share file or a Paillier public key file", EXIT_BAD_INPUT) from None
        if not isinstance(doc, dict):
            raise Refused(f"{path}: accepted: a share file or a Paillier public key file", EXIT_BAD_INPUT)
        if doc.get("format") == SHARE_FORMAT:
            info = _show_share(path)
        else:
            public = SplitPublicKey.from_dict(doc)
            info = {
                "kind": "public key",
                "key_id": public.key_id,
                "bits": public.bits,
                "custodians": len(public.custodians),
                "custodian_keys": list(public.custodians),
            }
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except (KeyShareError, MalformedMessage, ValueError) as exc:
        raise fail(f"{path}: not a share or public key file ({exc})", EXIT_BAD_INPUT, as_json) from None
    if as_json:
        print_json(info)
    else:
        console.print(kv_table(str(path), info))
