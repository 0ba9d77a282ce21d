"""`pcf custodian ...`: the Paillier key ceremony, a custodian's partial decryption, and what a share holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from custodian.ceremony import CEREMONY_MIN_KEY_BITS, ceremony_files, custodian_init
from custodian.decrypt import custodian_decrypt
from custodian.errors import CustodianKeyError
from custodian.fetch import FetchFailed, fetch_log, fetch_request
from custodian.store import ledger_path, load_share, read_ledger, read_share_header
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
from protocols.certificates import CertificateRejected, RevocationList, verify_revocation_list
from protocols.paillier import (
    MIN_PARTICIPANTS_FLOOR,
    MIN_PASSWORD_LENGTH,
    SHARE_FORMAT,
    CustodianRefused,
    KeyShareError,
    MalformedMessage,
    SplitPublicKey,
    parse_log,
)

__all__ = ["custodian_app"]

custodian_app = typer.Typer(help="Paillier key ceremony and custodians' partial decryptions.", no_args_is_help=True)

_PASSWORD_HINT = f"at least {MIN_PASSWORD_LENGTH} characters for custodian shares"


def _password(var: str) -> str:
    return password_from_env(var, hint=_PASSWORD_HINT)


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
        console.print(f"Publish the key fingerprint {result.key_id}: rounds name it in their signed spec "
                      "(paillier.key_id) and members pin it (pcf node enroll --paillier-key, or pcf node pin-paillier-key).")
        console.print("Each custodian takes their share away; then wipe this directory (keep the public key).")


def _revocation_list(path: Path | None, authority_key: str | None) -> RevocationList | None:
    if path is None:
        return None
    if authority_key is None:
        raise Refused("--crl needs --authority-key: the list is checked against the authority's key", EXIT_BAD_INPUT)
    try:
        return verify_revocation_list(_read_json(path, "the revocation list"), authority_key)
    except CertificateRejected as exc:
        raise Refused(f"{path}: {exc}", EXIT_BAD_INPUT) from None


@custodian_app.command("decrypt")
def custodian_decrypt_cmd(
    share: Annotated[Path, typer.Option("--share", help="This custodian's share file.")],
    round_id: Annotated[str, typer.Option("--round", help="The paillier round to decrypt.")],
    aggregator_key: Annotated[
        str, typer.Option("--aggregator-key", help="The aggregator's identity key as the association published it "
                          "(base64url); the log, spec and roster must be signed with it.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed partial decryption (JSON).")],
    aggregator: Annotated[
        str | None, typer.Option("--aggregator", help="The aggregator's base URL: read its log and contribution bodies.")
    ] = None,
    log: Annotated[
        Path | None, typer.Option("--log", help="Offline: the transparency log (GET /api/v1/log pages, JSON).")
    ] = None,
    request: Annotated[
        Path | None, typer.Option("--request", help="Offline: the round's decryption request (JSON), for its bodies.")
    ] = None,
    ca: Annotated[Path | None, typer.Option("--ca", help="CA certificate of the aggregator's HTTPS endpoint.")] = None,
    authority_key: Annotated[
        str | None, typer.Option("--authority-key", help="The membership authority's public key as it published it: "
                                 "every roster member must hold its current certificate.")
    ] = None,
    crl: Annotated[
        Path | None, typer.Option("--crl", help="The authority's signed revocation list (pcf authority crl).")
    ] = None,
    no_authority: Annotated[
        bool, typer.Option("--no-authority", help="Development only: decrypt without checking the roster members' "
                           "certificates (the aggregator could then count members it invented).")
    ] = False,
    min_participants: Annotated[
        int, typer.Option("--min-participants", help="This custodian's own minimum; the signed spec's applies if larger.")
    ] = MIN_PARTICIPANTS_FLOOR,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Environment variable holding the share's password.")
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Decrypt the stage a round waits for (the log's first undecided stage, every earlier one 'proceed'), or refuse."""
    try:
        refuse_existing([out], force)
        if authority_key is None and not no_authority:
            raise Refused("--authority-key KEY is required: the membership authority's key as it published it; "
                          "without it the aggregator could count members it invented (--no-authority: development "
                          "only)", EXIT_BAD_INPUT)
        if (aggregator is None) == (log is None and request is None):
            raise Refused("give --aggregator URL, or --log FILE and --request FILE (offline)", EXIT_BAD_INPUT)
        if aggregator is None and (log is None or request is None):
            raise Refused("offline decryption needs both --log FILE and --request FILE", EXIT_BAD_INPUT)
        try:
            identity.load_public_key_b64(aggregator_key)
        except IdentityError as exc:
            raise Refused(f"--aggregator-key: {exc}", EXIT_BAD_INPUT) from None
        password = (
            _password(password_env)
            if password_env
            else typer.prompt(f"password of {share.name}", hide_input=True, err=True)
        )
        if aggregator is not None:
            key_share, _public = load_share(share, password)
            with httpx.Client(timeout=30.0, verify=str(ca) if ca else True) as http:
                try:
                    entries = fetch_log(http, aggregator)
                    bodies, previous = fetch_request(http, aggregator, round_id, key_share.signing_key)
                except FetchFailed as exc:
                    raise Refused(str(exc), EXIT_BAD_INPUT) from None
        else:
            assert log is not None and request is not None
            entries = parse_log(_read_json(log, "the transparency log"))
            doc = _read_json(request, "the request")
            items = doc.get("contributions") if isinstance(doc, dict) else None
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise Refused(f"{request}: no list of contributions", EXIT_BAD_INPUT)
            bodies = items
            previous = doc.get("previous_partials") or []
            if not isinstance(previous, list) or not all(isinstance(i, dict) for i in previous):
                raise Refused(f"{request}: previous_partials is not a list of partial decryptions", EXIT_BAD_INPUT)
        revocations = _revocation_list(crl, authority_key)
        partial = custodian_decrypt(
            share, password, round_id, log=entries, aggregator_key=aggregator_key, bodies=bodies,
            min_participants=min_participants, authority_key=authority_key, revocations=revocations,
            previous_partials=previous,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        write_public(out, (partial + "\n").encode("utf-8"), overwrite=True)
    except Refused as exc:
        raise fail(str(exc), exc.code, as_json) from None
    except CustodianRefused as exc:
        raise fail(f"refused: {exc}", EXIT_REFUSED, as_json) from None
    except MalformedMessage as exc:
        raise fail(f"{request or aggregator}: {exc}", EXIT_BAD_INPUT, as_json) from None
    except KeyShareError as exc:
        raise fail(str(exc), EXIT_KEY_FILE, as_json) from None
    doc = json.loads(partial)
    info = {
        "out": str(out),
        "round_id": doc["round_id"],
        "stage": doc.get("stage", "screen"),
        "key_id": doc["key_id"],
        "custodian_index": doc["custodian_index"],
        "contributions": len(doc["contribution_digests"]),
        "ledger": str(ledger_path(share)),
    }
    if as_json:
        print_json(info)
    else:
        console.print(kv_table(f"partial decryption of round {doc['round_id']}, stage {info['stage']}", info))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Refused(f"{path}: cannot read {what}: {exc.strerror}", EXIT_BAD_INPUT) from None
    except ValueError:
        raise Refused(f"{path}: {what} is not JSON", EXIT_BAD_INPUT) from None


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
