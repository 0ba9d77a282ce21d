"""``pcf agg``: run the aggregator service and administer it through its HTTP API.

Every command except ``serve`` is an HTTPS client of a running service (``--url``, default
``$PCF_AGG_PUBLIC_BASE_URL`` or ``https://127.0.0.1:8080``) authenticated with the admin token
(``--token``, default ``$PCF_AGG_ADMIN_TOKEN``): the service holds the signing key and the
database, so administration goes through the same checks and transparency log as everything
else. The token is sent to ``https://`` URLs only, verified against ``pcf agg --ca CA.crt``
(``$PCF_AGG_TLS_CAFILE``; default the system's trust store). ``--json`` prints the service's JSON
answer instead of a table.

``serve`` serves HTTPS with ``PCF_AGG_TLS_CERTFILE`` / ``PCF_AGG_TLS_KEYFILE``; plain HTTP only with
``--insecure-http`` in development, and then the service refuses the admin token and PACT credentials.

Exit codes (aggregator band 20-29): 20 other error, 21 refused credentials (401/403), 22 not
found (404), 23 conflict with the round's state (409), 24 service unreachable, 25 delivery failed
(502), 26 invalid input (400/422), 27 service misconfigured (503), 28 database schema (cannot be
opened, used or upgraded).

``serve`` and ``db`` work on the database directly: ``pcf agg db upgrade`` / ``db current``
(``--db``, default ``$PCF_AGG_DB_URL`` or the SQLite file under ``$PCF_AGG_HOME``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer

from common.console import JsonOption, err, fail, out, print_json, table
from common.schema_cli import schema_command

if TYPE_CHECKING:
    from aggregator.store import Store

__all__ = ["EXIT_CODES", "agg_app"]

EXIT_CODES = {400: 26, 401: 21, 403: 21, 404: 22, 409: 23, 422: 26, 502: 25, 503: 27}
EXIT_OTHER, EXIT_UNREACHABLE, EXIT_DATABASE = 20, 24, 28

agg_app = typer.Typer(help="The association's aggregator: service, members, rounds, publication.", no_args_is_help=True)
members_app = typer.Typer(help="Enrolled members: list, approve, revoke.", no_args_is_help=True)
round_app = typer.Typer(help="Aggregation rounds: create, open, status, run, cancel.", no_args_is_help=True)
db_app = typer.Typer(help="The aggregator's database schema: its revision, upgrades.", no_args_is_help=True)
agg_app.add_typer(members_app, name="members")
agg_app.add_typer(round_app, name="round")
agg_app.add_typer(db_app, name="db")

Url = Annotated[str, typer.Option("--url", envvar="PCF_AGG_PUBLIC_BASE_URL", help="Aggregator service base URL.")]
Token = Annotated[
    str, typer.Option("--token", envvar="PCF_AGG_ADMIN_TOKEN", help="Admin token.", show_default=False)
]
DEFAULT_URL = "https://127.0.0.1:8080"

# Set by the group callback from ``pcf agg --ca`` / $PCF_AGG_TLS_CAFILE; read by every client command.
_client_tls: dict[str, Path | None] = {"ca": None}


@agg_app.callback()
def _client_options(
    ca: Annotated[
        Path | None,
        typer.Option("--ca", envvar="PCF_AGG_TLS_CAFILE", show_default=False,
                     help="CA certificate the service's HTTPS certificate is checked against (tls/ca.crt); "
                          "default: the system's trust store."),
    ] = None,
) -> None:
    """The association's aggregator: service, members, rounds, publication."""
    _client_tls["ca"] = ca


def _verify() -> Any:
    ca = _client_tls["ca"]
    if ca is None:
        return True
    from keys.tls import client_context

    try:
        return client_context(ca.read_text(encoding="ascii"))
    except (OSError, ValueError) as exc:
        raise fail(f"--ca {ca}: {exc}", EXIT_OTHER) from None


def _call(method: str, url: str, path: str, token: str, body: Any = None, content: bytes | None = None) -> Any:
    if not token:
        raise fail("no admin token: pass --token or set PCF_AGG_ADMIN_TOKEN", 21)
    if not url.lower().startswith("https://"):
        raise fail(f"--url {url}: the admin token is sent over HTTPS only (the service refuses it over plain "
                   "HTTP too); use the https:// URL of the service", 21)
    headers = {"Authorization": f"Bearer {token}"}
    if content is not None:
        headers["Content-Type"] = "application/json"
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=120.0, verify=_verify()) as client:
            response = client.request(method, path, json=body, content=content, headers=headers)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the aggregator at {url}: {exc}", EXIT_UNREACHABLE) from None
    if response.is_success:
        return response.json()
    try:
        data = response.json()
        detail = data.get("detail", data) if isinstance(data, dict) else data
    except ValueError:
        detail = response.text[:500]
    if not isinstance(detail, str):
        detail = json.dumps(detail, ensure_ascii=False)[:2000]
    raise fail(f"HTTP {response.status_code}: {detail}", EXIT_CODES.get(response.status_code, EXIT_OTHER))


# ------------------------------------------------------------------------------------------ serve


@agg_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    insecure_http: Annotated[
        bool,
        typer.Option("--insecure-http", help="Development only: plain HTTP (the admin token and PACT credentials "
                                            "are then refused). Same as PCF_AGG_INSECURE_HTTP=1."),
    ] = False,
) -> None:
    """Run the aggregator service over HTTPS (settings from PCF_AGG_* environment variables).

    The certificate and key are ``PCF_AGG_TLS_CERTFILE`` / ``PCF_AGG_TLS_KEYFILE``. Proxy headers are
    ignored: whether a request arrived over TLS is what the connection says, never what a client claims.
    """
    import os

    import uvicorn
    from pydantic import ValidationError

    from aggregator.settings import AggregatorSettings

    if insecure_http:
        os.environ["PCF_AGG_INSECURE_HTTP"] = "1"  # the app factory reads the same settings from the environment
    try:
        settings = AggregatorSettings()  # type: ignore[call-arg]
        served = settings.serving_tls()
    except (ValidationError, ValueError) as exc:
        raise fail(f"settings refused:\n{exc}", 27) from None
    # Open (and upgrade) the database here, so a schema problem is one named error, not a traceback.
    _open_database(settings.database_url, settings.db_auto_upgrade).close()
    if served is None:
        err.print("[yellow]warning:[/yellow] plain HTTP (--insecure-http): the admin token and PACT credentials "
                  "are refused; development only", highlight=False)
    uvicorn.run(
        "aggregator.app:app_from_env", factory=True, host=host, port=port, proxy_headers=False,
        ssl_certfile=str(served[0]) if served else None, ssl_keyfile=str(served[1]) if served else None,
    )


def _open_database(url: str, auto_upgrade: bool) -> Store:
    from sqlalchemy.exc import SQLAlchemyError

    from aggregator.migrations import SchemaError
    from aggregator.store import open_store

    try:
        store = open_store(url, auto_upgrade=auto_upgrade)
    except SchemaError as exc:
        raise fail(str(exc), EXIT_DATABASE) from None
    except (SQLAlchemyError, ValueError) as exc:
        raise fail(f"cannot open the aggregator database: {type(exc).__name__}: {exc}", EXIT_DATABASE) from None
    for note in store.notes:
        if note.startswith("kept"):
            err.print(f"[yellow]warning:[/yellow] {note}", highlight=False, soft_wrap=True)
    return store


# ------------------------------------------------------------------------------------------- db

DbUrl = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $PCF_AGG_DB_URL, or SQLite under $PCF_AGG_HOME).",
                 show_default=False),
]


def _schema_command(db: str | None, as_json: bool, upgrade: bool) -> None:
    from aggregator import migrations
    from aggregator.settings import AggregatorDatabaseSettings
    from aggregator.store import make_engine

    try:
        engine = make_engine(db or AggregatorDatabaseSettings().database_url)
    except ValueError as exc:
        raise fail(str(exc), EXIT_DATABASE, as_json) from None
    schema_command(migrations.SCHEMA, engine, upgrade=upgrade, as_json=as_json, exit_code=EXIT_DATABASE)


@db_app.command("upgrade")
def db_upgrade(db: DbUrl = None, as_json: JsonOption = False) -> None:
    """Upgrade the database to this release's schema (a release 0.1 database is recognised and adopted)."""
    _schema_command(db, as_json, upgrade=True)


@db_app.command("current")
def db_current(db: DbUrl = None, as_json: JsonOption = False) -> None:
    """Print the database's schema revision and whether it is the one this release needs."""
    _schema_command(db, as_json, upgrade=False)


# ---------------------------------------------------------------------------------------- members


def _member_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [[m["id"], m["fingerprint"], m["org_name_en"], m["org_name_zh"], m["status"], m["updated_at"]] for m in items]


_MEMBER_COLUMNS = ["id", "fingerprint", "organisation", "组织", "status", "updated"]


@members_app.command("list")
def members_list(
    url: Url = DEFAULT_URL,
    token: Token = "",
    status: Annotated[str | None, typer.Option(help="pending, approved or revoked.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List enrolled members."""
    path = "/api/v1/members" + (f"?status={status}" if status else "")
    data = _call("GET", url, path, token)
    if as_json:
        print_json(data)
    else:
        out.print(table("Members", _MEMBER_COLUMNS, _member_rows(data)))


def _member_action(action: str, member_id: int, url: str, token: str, as_json: bool) -> None:
    data = _call("POST", url, f"/api/v1/members/{member_id}/{action}", token)
    if as_json:
        print_json(data)
    else:
        out.print(table(f"Member {member_id}", _MEMBER_COLUMNS, _member_rows([data])))


@members_app.command("approve")
def members_approve(member_id: int, url: Url = DEFAULT_URL, token: Token = "", as_json: JsonOption = False) -> None:
    """Approve a pending member."""
    _member_action("approve", member_id, url, token, as_json)


@members_app.command("revoke")
def members_revoke(member_id: int, url: Url = DEFAULT_URL, token: Token = "", as_json: JsonOption = False) -> None:
    """Revoke a member (final: the organisation enrols a new key to return)."""
    _member_action("revoke", member_id, url, token, as_json)


# ----------------------------------------------------------------------------------------- rounds


_ROUND_COLUMNS = ["round", "protocol", "state", "contributions", "deadline", "decision"]


def _round_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["round_id"], r["protocol"], r["state"], r["contributions"], r["deadline"], r["decision"]] for r in items]


def _show_round(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        out.print(table(f"Round {data['round_id']}", _ROUND_COLUMNS, _round_rows([data])))


@round_app.command("create")
def round_create(
    spec_file: Annotated[Path | None, typer.Argument(help="RoundSpec JSON file; or give the round by the flags "
                                                    "below.", exists=True, dir_okay=False)] = None,
    round_id: Annotated[str | None, typer.Option(help="Round id (flags mode).")] = None,
    product_en: Annotated[str | None, typer.Option(help="Product name in English.")] = None,
    product_zh: Annotated[str | None, typer.Option(help="Product name in Chinese.")] = None,
    code: Annotated[str | None, typer.Option(help="GB/T 4754-2017 industry code, e.g. 3216.")] = None,
    reference_flow: Annotated[str | None, typer.Option(help="UUID of the product's reference flow.")] = None,
    region: Annotated[str, typer.Option(help="CN, CN-YN or finer.")] = "CN",
    period: Annotated[str, typer.Option(help="Reference period START/END, e.g. 2024-01-01/2024-12-31.")]
    = "2024-01-01/2024-12-31",
    reference_unit: Annotated[str, typer.Option(help="Reference unit of the product.")] = "t",
    component: Annotated[list[str] | None, typer.Option(
        help="Repeatable: FLOW_UUID,NAME_EN,NAME_ZH,input|output,UNIT,SCALE,BOUND (value per reference unit)")]
    = None,
    gases: Annotated[str, typer.Option(help="Comma-separated gases of the footprint slots.")] = "CO2,CH4,N2O",
    gwp_set: Annotated[str, typer.Option(help="AR5 or AR6.")] = "AR5",
    footprint_bound: Annotated[float, typer.Option(help="Plausibility bound of a footprint, kg CO2e per "
                                                   "reference unit.")] = 50_000.0,
    histogram: Annotated[str | None, typer.Option(help="Comma-separated histogram edges (kg CO2e); default: "
                                                  "ten equal bins up to the bound.")] = None,
    protocol: Annotated[str, typer.Option(help="secagg or paillier.")] = "secagg",
    min_participants: Annotated[int, typer.Option(help="Minimum participants to publish.")] = 3,
    max_participants: Annotated[int, typer.Option(help="Largest number of participants (overflow proof).")] = 200,
    p_percent: Annotated[float, typer.Option("--p-percent", help="The p %-rule's p: no firm may be able to estimate "
                                             "another's part of a published total within p %.")] = 10.0,
    deadline: Annotated[str | None, typer.Option(help="ISO 8601 deadline with time zone.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: JsonOption = False,
) -> None:
    """Create a draft round from a spec file or from flags; the aggregator validates and signs it."""
    if spec_file is not None:
        body = spec_file.read_bytes()
    else:
        body = _spec_from_flags(round_id, product_en, product_zh, code, reference_flow, region, period,
                                reference_unit, component or [], gases, gwp_set, footprint_bound, histogram,
                                protocol, min_participants, max_participants, p_percent, deadline)
    _show_round(_call("POST", url, "/api/v1/rounds", token, content=body), as_json)


def _spec_from_flags(round_id: str | None, product_en: str | None, product_zh: str | None, code: str | None,
                     reference_flow: str | None, region: str, period: str, reference_unit: str,
                     components: list[str], gases: str, gwp_set: str, footprint_bound: float,
                     histogram: str | None, protocol: str, min_participants: int, max_participants: int,
                     p_percent: float, deadline: str | None) -> bytes:
    """A RoundSpec built from the command's flags; every problem is a usage error naming the flag."""
    from datetime import UTC, datetime, timedelta

    from pydantic import ValidationError

    from protocols.spec import Component, Footprint, Product, ReferencePeriod, RoundSpec

    missing = [f"--{n}" for n, v in (("round-id", round_id), ("product-en", product_en), ("product-zh", product_zh),
                                      ("code", code), ("reference-flow", reference_flow)) if not v]
    if not components:
        missing.append("--component")
    if missing:
        raise typer.BadParameter("give SPEC_FILE, or the flags " + ", ".join(missing))
    parsed: list[dict[str, Any]] = []
    for text in components:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 7:
            raise typer.BadParameter(f"--component {text!r}: accepted: FLOW_UUID,NAME_EN,NAME_ZH,input|output,"
                                     "UNIT,SCALE,BOUND")
        flow, en, zh, direction, unit, scale, bound = parts
        parsed.append({"flow": flow, "name_en": en, "name_zh": zh, "direction": direction, "unit": unit,
                       "scale": int(float(scale)), "bound": float(bound)})
    start, _, end = period.partition("/")
    edges = ([float(e) for e in histogram.split(",")] if histogram else
             [footprint_bound * i / 10 for i in range(11)])
    try:
        spec = RoundSpec(
            round_id=round_id or "", region=region, reference_unit=reference_unit, protocol=protocol,  # type: ignore[arg-type]
            product=Product(name_en=product_en or "", name_zh=product_zh or "", classification_code=code or "",
                            reference_flow=reference_flow or ""),
            reference_period=ReferencePeriod(start=start, end=end),  # type: ignore[arg-type]
            components=[Component.model_validate(c) for c in parsed],
            footprint=Footprint(gases=[g.strip() for g in gases.split(",") if g.strip()], gwp_set=gwp_set,  # type: ignore[arg-type]
                                bound=footprint_bound, histogram_edges=edges),
            min_participants=min_participants, max_participants=max_participants, p_percent=p_percent,
            deadline=datetime.fromisoformat(deadline) if deadline else datetime.now(UTC) + timedelta(days=30),
        )
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(f"the round given by the flags is not valid: {exc}") from None
    return spec.model_dump_json().encode()


@round_app.command("open")
def round_open(round_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: JsonOption = False) -> None:
    """Publish the signed spec and invite members."""
    _show_round(_call("POST", url, f"/api/v1/rounds/{round_id}/open", token), as_json)


@round_app.command("status")
def round_status(
    round_id: Annotated[str | None, typer.Argument(help="Round id; all rounds when omitted.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: JsonOption = False,
) -> None:
    """Show one round, or every round."""
    if round_id:
        _show_round(_call("GET", url, f"/api/v1/rounds/{round_id}", token), as_json)
        return
    data = _call("GET", url, "/api/v1/rounds", token)
    if as_json:
        print_json(data)
    else:
        out.print(table("Rounds", _ROUND_COLUMNS, _round_rows(data)))


@round_app.command("run")
def round_run(round_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: JsonOption = False) -> None:
    """Close collection and aggregate (paillier: then the custodians decrypt)."""
    _show_round(_call("POST", url, f"/api/v1/rounds/{round_id}/run", token), as_json)


@round_app.command("cancel")
def round_cancel(round_id: str, url: Url = DEFAULT_URL, token: Token = "", as_json: JsonOption = False) -> None:
    """Abort a round that has not ended."""
    _show_round(_call("POST", url, f"/api/v1/rounds/{round_id}/cancel", token), as_json)


@round_app.command("decryption-request")
def round_decryption_request(round_id: str, url: Url = DEFAULT_URL, token: Token = "") -> None:
    """Print a paillier round's decryption request (JSON) to hand to the custodians."""
    print_json(_call("GET", url, f"/api/v1/rounds/{round_id}/decryption-request", token))


@round_app.command("partial")
def round_partial(
    round_id: str,
    partial_file: Annotated[Path, typer.Argument(help="A custodian's partial decryption JSON.", exists=True)],
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: JsonOption = False,
) -> None:
    """Post a custodian's partial decryption (it is authenticated by the custodian's own signature)."""
    data = _call("POST", url, f"/api/v1/rounds/{round_id}/partial-decryptions", token, content=partial_file.read_bytes())
    if as_json:
        print_json(data)
    else:
        out.print(table(
            f"Round {round_id}",
            ["custodian", "received", "expected", "state"],
            [[data["custodian_index"], data["received"], data["expected"], data["state"]]],
        ))


# ---------------------------------------------------------------------------------------- publish


@agg_app.command()
def publish(
    round_id: Annotated[str, typer.Argument(help="A published round.")],
    to: Annotated[str, typer.Option("--to", envvar="PCF_AGG_NATIONAL_DB_PUSH_URL", help="Receiver URL.")] = "",
    url: Url = DEFAULT_URL,
    token: Token = "",
    as_json: JsonOption = False,
) -> None:
    """Deliver a round's signed factor package (retried, idempotent by factor id and version)."""
    if not to:
        raise fail("no receiver: pass --to URL or set PCF_AGG_NATIONAL_DB_PUSH_URL", 26)
    data = _call("POST", url, f"/api/v1/rounds/{round_id}/deliveries", token, body={"url": to})
    if as_json:
        print_json(data)
    else:
        out.print(table(
            f"Delivery of round {round_id}",
            ["factor", "revision", "to", "status", "attempts", "HTTP"],
            [[data["factor_id"], data["version"], data["url"], data["status"], data["attempts"], data["status_code"]]],
        ))
