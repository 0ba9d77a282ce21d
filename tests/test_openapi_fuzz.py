"""The aggregator's OpenAPI schema is accurate: schemathesis fuzzes every operation of a real server against it."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from agg_server import AggServer, https, session_tls
from conftest import free_port
from test_agg_http import (
    TOKEN,
    approved_nodes,
    create_round,
    firm_ints,
    make_spec,
    secagg_round,
)

pytestmark = pytest.mark.slow

PACT_CLIENT = ("pcf-aggregator", "pact-secret-0123456789abcdef")
MAX_EXAMPLES = 50
REQUIRED_CHECKS = ("not_a_server_error", "response_schema_conformance", "status_code_conformance")

EXCLUDED_OPERATIONS = {
    # Delivers the published factor package to the URL in the body, by design an outside host: the
    # stateful phase finds the published round through GET /rounds and would post to whatever URL
    # it generates (``http://0``...), with retries. tests/test_agg_http.py delivers to a local receiver.
    ("POST", "/api/v1/rounds/{round_id}/deliveries"),
}


@dataclass
class Seeded:
    url: str
    pact_token: str
    factor_id: str
    spec: dict[str, Any]
    """A valid round spec (JSON) that hand-written cases edit one field of."""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A real aggregator with approved members, a published factor and a draft round."""
    tmp = tmp_path_factory.mktemp("fuzz")
    home = tmp / "agg"
    home.mkdir()
    env = {
        "PCF_AGG_ENVIRONMENT": "production",
        "PCF_AGG_HOME": str(home),
        "PCF_AGG_DB_URL": f"sqlite:///{home / 'aggregator.db'}",
        "PCF_AGG_ADMIN_TOKEN": TOKEN,
        "PCF_AGG_PACT_CLIENT_SECRET": PACT_CLIENT[1],
        "AGG_TEST_INPUTS": str(tmp / "inputs.json"),
    }
    server = AggServer("agg_server:make_app", free_port(), env, tmp / "server.log").start()
    try:
        base = server.url
        nodes = approved_nodes(base, 4)
        spec = make_spec("fuzz-published")
        rows = dict(zip((n.fingerprint for n in nodes), firm_ints(spec), strict=True))
        assert secagg_round(base, spec, tmp / "inputs.json", rows)["state"] == "published"
        assert create_round(base, make_spec("fuzz-draft")).status_code == 201
        grant = {"grant_type": "client_credentials"}
        token = https.post(f"{base}/auth/token", data=grant, auth=PACT_CLIENT).json()["access_token"]
        factor_id = https.get(f"{base}/api/v1/factors").json()[0]["factor_id"]
        yield Seeded(base, token, factor_id, json.loads(make_spec("fuzz-odd").model_dump_json()))
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ the run


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string of printable ASCII is a TOML basic string


def schemathesis_config(seeded: Seeded) -> str:
    """The run's ``schemathesis.toml``: every default check, deterministic, with the roles' credentials."""
    basic = "Basic " + base64.b64encode(":".join(PACT_CLIENT).encode()).decode()
    excluded = "\n".join(
        f"[[operations]]\ninclude-name = {_toml(f'{m} {p}')}\nenabled = false\n" for m, p in sorted(EXCLUDED_OPERATIONS)
    )
    return f"""
workers = 1

[generation]
max-examples = {MAX_EXAMPLES}
deterministic = true  # Hypothesis derandomised: the same cases every run (no seed needed)
database = "none"

# Every check is on by default; the ones this test is about are named so that a default that
# changes cannot switch them off.
[checks]
{"".join(f"{name}.enabled = true{chr(10)}" for name in REQUIRED_CHECKS)}
[auth.openapi.HTTPBearer]  # admin routes
bearer = {_toml(TOKEN)}

[auth.openapi.BearerAuth]  # PACT /3/... routes
bearer = {_toml(seeded.pact_token)}

[[operations]]
include-path = "/auth/token"
headers = {{ Authorization = {_toml(basic)} }}

[[operations]]
include-name = "POST /api/v1/rounds"  # criteria of one [[operations]] are alternatives: one name
# RoundSpec checks fields with validators that its JSON schema does not state as patterns
# (protocols/spec.py): round_id, product.classification_code, product.reference_flow, region
# (and its ISO 3166-2:CN subdivision list), components[].flow, components[].aliases[],
# background_factors keys (UUIDs), footprint.gases[], plus the cross-field rules of
# structural_problems (unique flows and names, increasing histogram edges covering the bound,
# min <= max participants, period start <= end). Schema-valid specs are therefore refused
# with a documented 422; every other check still runs on this operation.
checks.positive_data_acceptance.enabled = false

{excluded}"""


def test_schemathesis_finds_no_failure_in_any_operation(seeded: Seeded, tmp_path: Path) -> None:
    # Prepare
    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config(seeded))
    junit = tmp_path / "junit.xml"
    operations = https.get(f"{seeded.url}/openapi.json").json()["paths"]
    expected = {f"{m.upper()} {p}" for p, ops in operations.items() for m in ops} - {
        f"{m} {p}" for m, p in EXCLUDED_OPERATIONS
    }

    # Execute: the command line runs every phase (examples, coverage, fuzzing, stateful links)
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
         f"{seeded.url}/openapi.json", "--no-color", "--report", "junit", "--report-junit-path", str(junit),
         "--tls-verify", str(session_tls().ca_cert)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    # Assert
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-5000:]
    tested = {case.get("name", "") for case in ET.parse(junit).iter("testcase")}
    assert expected <= tested, f"not tested: {sorted(expected - tested)}"


# ----------------------------------------------------------------------------- cases found by hand


@pytest.fixture(scope="module")
def api_schema(seeded: Seeded) -> Any:
    config = schemathesis.Config.from_dict(
        {"checks": {"enabled": False, **{name: {"enabled": True} for name in REQUIRED_CHECKS}}}
    )
    return schemathesis.openapi.from_url(f"{seeded.url}/openapi.json", config=config, verify=str(session_tls().ca_cert))


_BIG = "1" * 5000  # int() refuses more than 4300 digits with ValueError


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "status"),
    [
        ("GET", "/api/v1/factors/{factor_id}", {"version": _BIG}, None, 400),
        ("GET", "/api/v1/factors/{factor_id}", {"version": "99999999999999999999999"}, None, 400),
        ("GET", "/api/v1/factors/{factor_id}", {"version": ""}, None, 400),
        ("GET", "/api/v1/factors/{factor_id}/ilcd", {"version": "100000"}, None, 404),
        ("GET", "/api/v1/factors", {"industry": "3x"}, None, 400),
        ("GET", "/3/footprints", {"limit": _BIG}, None, 400),
        ("GET", "/3/footprints", {"offset": _BIG}, None, 400),
        ("GET", "/3/footprints", {"validOn": "0.5"}, None, 400),  # not a Unix time
        ("GET", "/3/footprints", {"validOn": "0001-01-01T00:00:00+23:59"}, None, 400),  # before year 1 in UTC
        ("GET", "/3/footprints", {"validBefore": "9999-12-31T23:59:59-23:59"}, None, 400),  # after 9999
        ("GET", "/3/footprints/{id}", {}, None, 404),
        ("POST", "/3/events", {}, {"time": "0001-01-01T00:00:00+01:00"}, 400),
        ("POST", "/3/events", {}, {"time": 1735689600}, 400),
        pytest.param(
            "POST", "/api/v1/rounds", {}, {"deadline": "0001-01-01T00:00:00+23:59"}, 422
        ),
    ],
)
def test_odd_inputs_answer_a_documented_client_error(
    api_schema: Any, seeded: Seeded, method: str, path: str, query: dict[str, str], body: Any, status: int
) -> None:
    # Prepare: the body edits one field of a valid PACT event or round spec
    operation = api_schema[path][method]
    if path == "/3/events":
        event = {"specversion": "1.0", "id": "e1", "source": "//fuzz", "time": "2025-01-01T00:00:00Z",
                 "type": "org.wbcsd.pact.ProductFootprint.PublishedEvent.3", "data": {"pfIds": ["x"]}}  # fmt: skip
        body = event | body
    elif path == "/api/v1/rounds":
        body = seeded.spec | body
    params = {"factor_id": seeded.factor_id, "id": "00000000-0000-0000-0000-000000000000"}
    case = operation.Case(
        path_parameters={p.name: params[p.name] for p in operation.path_parameters},
        query=query,
        **({"body": body} if body is not None else {}),
    )
    token = seeded.pact_token if path.startswith("/3/") else TOKEN

    # Execute
    response = case.call_and_validate(base_url=seeded.url, headers={"Authorization": f"Bearer {token}"},
                                      verify=str(session_tls().ca_cert))

    # Assert
    assert response.status_code == status, response.text[:500]
