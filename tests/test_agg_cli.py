"""`pcf agg round create` from flags, against a real aggregator on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agg_server import AggServer
from conftest import free_port
from typer.testing import CliRunner

from pcf.cli import app

TOKEN = "admin-token-for-cli-tests-0123456789"
runner = CliRunner()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AggServer]:
    home = tmp_path / "agg"
    home.mkdir()
    env = {"PCF_AGG_ENVIRONMENT": "production", "PCF_AGG_HOME": str(home), "PCF_AGG_ADMIN_TOKEN": TOKEN,
           "PCF_AGG_PACT_CLIENT_SECRET": "pact-secret-0123456789abcdef"}
    s = AggServer("agg_server:make_app", free_port(), env, tmp_path / "server.log").start()
    try:
        yield s
    finally:
        s.stop()


def test_round_create_from_flags_makes_a_signed_draft(server: AggServer) -> None:
    flow = "17ca0ef4-f67d-5979-93a2-ebfa90097b5d"
    result = runner.invoke(app, [
        "agg", "round", "create", "--round-id", "cli-flags-1", "--product-en", "Primary aluminium",
        "--product-zh", "原铝", "--code", "3216", "--reference-flow", "fada1f50-855d-593c-9ae7-8c1827a81d61",
        "--region", "CN-YN", "--component", f"{flow},Alumina,氧化铝,input,t,1000000,5",
        "--component", "08a91e70-3ddc-11dd-923d-0050c2490048,CO2,二氧化碳,output,kg,1000,5000",
        "--url", server.url, "--token", TOKEN, "--json"], env={"PCF_AGG_TLS_CAFILE": str(server.ca)})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["round_id"] == "cli-flags-1" and data["state"] == "draft"
    spec = data["signed_spec"]["spec"]
    assert spec["region"] == "CN-YN" and [c["name_zh"] for c in spec["components"]] == ["氧化铝", "二氧化碳"]
    assert data["signed_spec"]["signature"]


def test_round_create_without_spec_or_flags_names_what_is_missing(server: AggServer) -> None:
    result = runner.invoke(app, ["agg", "round", "create", "--round-id", "x", "--url", server.url, "--token", TOKEN])
    assert result.exit_code == 2
    assert "--product-en" in result.output and "--component" in result.output
