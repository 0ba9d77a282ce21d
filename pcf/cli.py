"""The `pcf` command: one Typer application with a sub-command group per role.

Exit codes come in bands per component: 1-9 general (2: usage), 10-19 node, 20-29 aggregator,
30-39 keys and custodians, 40-49 demo, 50-59 verify, 60-69 membership authority.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from aggregator.cli import agg_app
from authority.cli import authority_app
from common.console import JsonOption, fail, out, print_json
from custodian.cli import custodian_app
from keys.cli import keys_app
from node.cli import node_app
from pcf.demo import demo_cmd

__all__ = ["app"]

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

EXIT_VERIFY_FAILED = 50
EXIT_VERIFY_UNREACHABLE = 51

app = typer.Typer(
    help="pcf-dataspace: industry-average product carbon footprint factors from firms' primary data, "
    "by secure aggregation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(node_app, name="node", help="The enterprise node: your unit-process data stays on this machine.")
app.add_typer(agg_app, name="agg", help="The association's aggregator.")
app.add_typer(keys_app, name="keys", help="Identities, TLS material and deployment secrets.")
app.add_typer(custodian_app, name="custodian", help="Key custodians of paillier rounds: ceremony and partial decryption.")
app.add_typer(authority_app, name="authority", help="The membership authority: certifies firms' identity keys "
              "against their Unified Social Credit Codes.")
app.command("demo")(demo_cmd)


@app.command("verify")
def verify_cmd(
    factor_id: Annotated[str, typer.Argument(help="The published factor's id.")],
    from_url: Annotated[str, typer.Option("--from", help="The aggregator's base URL.")],
    version: Annotated[str | None, typer.Option(help="A factor version; the latest by default.")] = None,
    aggregator_key: Annotated[str | None, typer.Option(help="The aggregator's public key as published (pins it).")]
    = None,
    ca: Annotated[Path | None, typer.Option("--ca", help="CA certificate the aggregator's HTTPS certificate is "
                                            "checked against (tls/ca.crt); default: the system's trust store.",
                                            show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a factor against the transparency log: hashes, signatures, and the numbers recomputed."""
    import httpx

    from keys.tls import client_context
    from pcf.verify import verify_factor

    try:
        verify: Any = client_context(ca.read_text(encoding="ascii")) if ca is not None else True
    except (OSError, ValueError) as exc:
        raise fail(f"--ca {ca}: {exc}", EXIT_VERIFY_UNREACHABLE, as_json) from None
    try:
        with httpx.Client(timeout=30.0, verify=verify) as client:
            report = verify_factor(factor_id, from_url, version=version, aggregator_public_key=aggregator_key,
                                   client=client)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach {from_url}: {exc}", EXIT_VERIFY_UNREACHABLE, as_json) from None
    data = report.model_dump(mode="json")
    if as_json:
        print_json(data)
    else:
        if data.get("ok"):
            out.print(f"[green]verified[/green]: factor {factor_id} matches the log "
                      f"({len(data.get('checks', []))} checks)")
        else:
            out.print(f"[red]NOT verified[/red]: entry {data.get('break_seq')}: {data.get('reason')}")
        for item in data.get("unverified", []) or []:
            out.print(f"  not checkable: {item}")
    if not data.get("ok"):
        raise typer.Exit(EXIT_VERIFY_FAILED)
