"""`pcf custodian ...` driven through the `pcf` CLI: key ceremony, partial decryptions, show."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from paillier_log import paillier_spec, receipt_payload, round_log, stage_payload
from typer.testing import CliRunner

from custodian.store import ledger_path, load_public_key
from keys import identity
from keys.cli_common import EXIT_BAD_INPUT, EXIT_EXISTS, EXIT_KEY_FILE, EXIT_REFUSED
from pcf.cli import app
from protocols.paillier import PartialDecryption, combine, encrypt_contribution, make_layout, spec_layout
from protocols.translog import CONTRIBUTION_RECEIPT, STAGE

runner = CliRunner()


def custodian(*args: str) -> tuple[int, Any]:
    result = runner.invoke(app, ["custodian", *args])
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.stdout + result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_round(
    tmp_path: Path, public_key: Any, round_id: str, firms: list[Any], values: list[list[int]], logged: int
) -> tuple[Path, Path, str, Any]:
    """A round's log (``logged`` of the firms' receipts) and a request carrying every firm's body."""
    spec = paillier_spec(round_id, public_key.key_id)
    layout = spec_layout(spec)
    aggregator = identity.generate_identity()
    contributions = [
        encrypt_contribution(public_key, layout, [min(b, x) for b, x in zip(layout.bounds, v * layout.n_slots, strict=False)],
                             round_id, f)
        for v, f in zip(values, firms, strict=True)
    ]
    log = round_log(aggregator, spec, firms, list(zip(firms, contributions, strict=True))[:logged])
    log_file, request = tmp_path / f"{round_id}-log.json", tmp_path / f"{round_id}-request.json"
    log_file.write_text(json.dumps({"entries": [e.model_dump(mode="json") for e in log.entries]}))
    request.write_text(json.dumps({"round_id": round_id, "contributions": [c.to_dict() for c in contributions[:logged]]}))
    return log_file, request, identity.public_key_b64(aggregator), layout


def test_custodian_init_and_decrypt_recover_the_sum_and_refuse_a_second_decryption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a 2-custodian key, a round whose log records three contributions
    ceremony = tmp_path / "ceremony"
    monkeypatch.setenv("PW0", "first custodian's password")
    monkeypatch.setenv("PW1", "second custodian's password")
    code_init, init = custodian(
        "init", "--out", str(ceremony), "--custodians", "2",
        "--password-env", "PW0", "--password-env", "PW1", "--json",
    )
    assert code_init == 0 and init["bits"] == 2048
    public_key = load_public_key(ceremony / "paillier_public_key.json")
    firms = [identity.generate_identity() for _ in range(3)]
    log, request, aggregator_key, layout = write_round(tmp_path, public_key, "round-1", firms, [[1], [2], [3]], 3)

    # Execute: each custodian answers; then one is asked again
    partials = []
    for i in range(2):
        code, out = custodian(
            "decrypt", "--no-authority", "--share", str(ceremony / f"custodian-{i}.share"), "--round", "round-1",
            "--aggregator-key", aggregator_key, "--log", str(log), "--request", str(request),
            "--out", str(tmp_path / f"partial-{i}.json"), "--password-env", f"PW{i}", "--json",
        )
        assert code == 0, out
        assert out["contributions"] == 3 and out["custodian_index"] == i and out["stage"] == "screen"
        partials.append(PartialDecryption.from_dict(json.loads((tmp_path / f"partial-{i}.json").read_text())))
    code_again, again = custodian(
        "decrypt", "--no-authority", "--share", str(ceremony / "custodian-0.share"), "--round", "round-1",
        "--aggregator-key", aggregator_key, "--log", str(log), "--request", str(request),
        "--out", str(tmp_path / "partial-again.json"), "--password-env", "PW0", "--json",
    )
    code_show, shown = custodian("show", str(ceremony / "custodian-0.share"), "--json")

    # Assert
    expected = [sum(min(b, x) for x in (1, 2, 3)) for b in layout.bounds]
    assert combine(partials, public_key, layout, 3) == expected
    assert code_again == EXIT_REFUSED and "already decrypted" in again["error"]
    assert not (tmp_path / "partial-again.json").exists()
    assert code_show == 0 and shown["custodian_index"] == 0 and shown["key_id"] == init["key_id"]
    assert shown["decrypted_rounds"] == ["round-1"]
    assert "exponent" not in json.dumps(shown)


def test_custodian_decrypt_takes_the_stage_the_log_shows_the_round_waiting_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a round whose log shows the screen decided 'proceed' and the cohort's dominance contributions
    ceremony = tmp_path / "ceremony"
    monkeypatch.setenv("PW0", "first custodian's password")
    monkeypatch.setenv("PW1", "second custodian's password")
    assert custodian("init", "--out", str(ceremony), "--custodians", "2", "--password-env", "PW0",
                     "--password-env", "PW1", "--json")[0] == 0
    public_key = load_public_key(ceremony / "paillier_public_key.json")
    firms = [identity.generate_identity() for _ in range(3)]
    spec = paillier_spec("staged", public_key.key_id)
    aggregator = identity.generate_identity()
    layout = make_layout([1, 1], spec.max_participants, spec.paillier.key_bits)
    screens = [encrypt_contribution(public_key, spec_layout(spec), [0] * spec_layout(spec).n_slots, "staged", f)
               for f in firms]
    counts = [encrypt_contribution(public_key, layout, [1, 1], "staged", f, stage="dominance") for f in firms]
    log = round_log(aggregator, spec, firms, list(zip(firms, screens, strict=True)))
    log.append(STAGE, stage_payload(spec, "screen"))
    for k, (f, c) in enumerate(zip(firms, counts, strict=True)):
        log.append(CONTRIBUTION_RECEIPT, receipt_payload("staged", f, c.to_dict(), f"1893456200.{k:06d}", stage="dominance"))
    log_file, request = tmp_path / "log.json", tmp_path / "request.json"
    log_file.write_text(json.dumps({"entries": [e.model_dump(mode="json") for e in log.entries]}))
    request.write_text(json.dumps({"round_id": "staged", "stage": "dominance", "contributions": [c.to_dict() for c in counts]}))

    # Execute
    partials = []
    for i in range(2):
        code, out = custodian(
            "decrypt", "--no-authority", "--share", str(ceremony / f"custodian-{i}.share"), "--round", "staged",
            "--aggregator-key", identity.public_key_b64(aggregator), "--log", str(log_file), "--request", str(request),
            "--out", str(tmp_path / f"partial-{i}.json"), "--password-env", f"PW{i}", "--json",
        )
        assert code == 0, out
        assert out["stage"] == "dominance"
        partials.append(PartialDecryption.from_dict(json.loads((tmp_path / f"partial-{i}.json").read_text())))

    # Assert: the two counts of the three firms; the ledger names the stage
    assert combine(partials, public_key, layout, 3) == [3, 3]
    assert all(p.stage == "dominance" for p in partials)
    assert custodian("show", str(ceremony / "custodian-0.share"), "--json")[1]["decrypted_rounds"] == ["staged/dominance"]


PASSWORDS = {"PW0": "first custodian's password", "PW1": "second custodian's password"}


@pytest.fixture(scope="module")
def ceremony(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2048-bit ceremony shared by the tests below (none of them writes a ledger entry)."""
    out = tmp_path_factory.mktemp("shared") / "ceremony"
    with pytest.MonkeyPatch.context() as mp:
        for var, value in PASSWORDS.items():
            mp.setenv(var, value)
        code, result = custodian(
            "init", "--out", str(out), "--custodians", "2", "--password-env", "PW0", "--password-env", "PW1", "--json"
        )
    assert code == 0, result
    return out


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in PASSWORDS.items():
        monkeypatch.setenv(var, value)


@pytest.mark.usefixtures("passwords")
def test_custodian_init_writes_owner_only_shares_and_a_public_key_and_refuses_a_second_ceremony(
    ceremony: Path,
) -> None:
    code, again = custodian(
        "init", "--out", str(ceremony), "--custodians", "2", "--password-env", "PW0", "--password-env", "PW1", "--json"
    )
    code_show, shown = custodian("show", str(ceremony / "paillier_public_key.json"), "--json")

    assert all(mode(ceremony / f"custodian-{i}.share") == 0o600 for i in range(2))
    assert mode(ceremony / "paillier_public_key.json") == 0o644
    assert code == EXIT_EXISTS and "--force" in again["error"]
    assert code_show == 0 and shown["kind"] == "public key" and len(shown["custodian_keys"]) == 2
    assert not ledger_path(ceremony / "custodian-0.share").exists()


def test_custodian_decrypt_with_a_wrong_password_fails_without_touching_the_ledger(
    ceremony: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    public_key = load_public_key(ceremony / "paillier_public_key.json")
    firms = [identity.generate_identity() for _ in range(3)]
    log, request, aggregator_key, _ = write_round(tmp_path, public_key, "r", firms, [[1], [1], [1]], 3)
    monkeypatch.setenv("WRONG", "not the right password")

    code, out = custodian(
        "decrypt", "--no-authority", "--share", str(ceremony / "custodian-0.share"), "--round", "r", "--aggregator-key", aggregator_key,
        "--log", str(log), "--request", str(request), "--out", str(tmp_path / "p.json"), "--password-env", "WRONG",
        "--json",
    )

    assert code == EXIT_KEY_FILE and "wrong password" in out["error"]
    assert not ledger_path(ceremony / "custodian-0.share").exists()
    assert not (tmp_path / "p.json").exists()


@pytest.mark.usefixtures("passwords")
def test_custodian_decrypt_refuses_a_request_that_is_not_json(ceremony: Path, tmp_path: Path) -> None:
    public_key = load_public_key(ceremony / "paillier_public_key.json")
    firms = [identity.generate_identity() for _ in range(3)]
    log, request, aggregator_key, _ = write_round(tmp_path, public_key, "r", firms, [[1], [1], [1]], 3)
    request.write_text("{not json")

    code, out = custodian(
        "decrypt", "--no-authority", "--share", str(ceremony / "custodian-0.share"), "--round", "r", "--aggregator-key", aggregator_key,
        "--log", str(log), "--request", str(request), "--out", str(tmp_path / "p.json"), "--password-env", "PW0",
        "--json",
    )

    assert code == EXIT_BAD_INPUT and "not JSON" in out["error"]


@pytest.mark.usefixtures("passwords")
def test_custodian_decrypt_refuses_when_the_log_has_a_contribution_the_request_lacks(
    ceremony: Path, tmp_path: Path
) -> None:
    # Prepare: the log records four contributions, the aggregator hands over three
    public_key = load_public_key(ceremony / "paillier_public_key.json")
    firms = [identity.generate_identity() for _ in range(4)]
    log, request, aggregator_key, _ = write_round(tmp_path, public_key, "r4", firms, [[1], [2], [3], [4]], 4)
    doc = json.loads(request.read_text())
    request.write_text(json.dumps({**doc, "contributions": doc["contributions"][1:]}))

    # Execute
    code, out = custodian(
        "decrypt", "--no-authority", "--share", str(ceremony / "custodian-0.share"), "--round", "r4", "--aggregator-key", aggregator_key,
        "--log", str(log), "--request", str(request), "--out", str(tmp_path / "p.json"), "--password-env", "PW0",
        "--json",
    )

    # Assert
    assert code == EXIT_REFUSED and "every logged contribution is decrypted or none" in out["error"]
    assert not (tmp_path / "p.json").exists() and not ledger_path(ceremony / "custodian-0.share").exists()
