"""Secure-aggregation rounds over a Flower SuperLink: SuperNode registration on approval and ``flwr run`` of a round.

The aggregator drives the SuperLink only through the Flower CLI, with ``FLWR_HOME`` set to
``settings.flwr_home_dir`` whose ``config.toml`` names the SuperLink as the connection
``settings.superlink_connection`` (:func:`write_flwr_config`):

* approving a member runs ``flwr supernode register <key file> <connection> --format json`` and
  keeps the node id it prints (:func:`register_supernode`); revoking it runs
  ``flwr supernode unregister <node id> <connection> --format json`` (:func:`unregister_supernode`),
  so its SuperNode can no longer connect;
* running a ``secagg`` round (:class:`FlowerSecAggRunner`) writes a Flower App project naming
  ``pcf.flower_app:server_app`` / ``node.flower_client:client_app``, the roster file (node id ->
  identity key, from the round's signed roster) and the run config, runs ``flwr run`` and waits
  for the ServerApp's result file; a failed, stopped or overdue run raises, so the round aborts.
  Every disclosure stage of a round runs in that one Flower run: after each result the aggregator
  decides, then hands the ServerApp the next stage (with the context it signed) or tells it to stop
  (:data:`protocols.flower_apps.NEXT_STAGE_FILE`, :data:`protocols.flower_apps.STOP_FILE`).

The ServerApp runs in a process the SuperLink starts, so the run directory (roster, results, stage
hand-overs) must be a path both the aggregator and the SuperLink see: the same machine, or a shared
volume.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from aggregator.errors import RegistrationFailed, UnregistrationFailed
from aggregator.members import SuperNodeRegistrar, SuperNodeUnregistrar
from aggregator.rounds import RosterEntry, StageRun, StageSum, secagg_value_bits
from aggregator.settings import AggregatorSettings
from aggregator.store import utcnow
from protocols.disclosure import stage_round_id
from protocols.fab import APPROVED_CLIENTAPP, DEFAULT_SERVERAPP, fab_pyproject
from protocols.flower_apps import NEXT_STAGE_FILE, STOP_FILE
from protocols.secagg_policy import required_threshold, spec_degree
from protocols.spec import RoundSpec

__all__ = [
    "CLIENT_APP",
    "SERVER_APP",
    "CommandRunner",
    "FlowerRunFailed",
    "FlowerSecAggRunner",
    "flwr_env",
    "register_supernode",
    "run_config_toml",
    "supernode_registrar",
    "supernode_unregistrar",
    "unregister_supernode",
    "write_fab_project",
    "write_flwr_config",
]

log = logging.getLogger(__name__)

SERVER_APP: Final = DEFAULT_SERVERAPP
CLIENT_APP: Final = APPROVED_CLIENTAPP
_BIN = Path(sys.executable).parent
_REPO = Path(__file__).resolve().parents[1]
_CLI_TIMEOUT = 120.0
_STATUS_EVERY = 15.0
_config_lock = threading.Lock()

CommandRunner = Callable[[Sequence[str], Mapping[str, str], float], "subprocess.CompletedProcess[str]"]
"""``run(args, env, timeout) -> CompletedProcess`` with text stdout/stderr (tests inject a fake)."""


class FlowerRunFailed(RuntimeError):
    """A round's Flower run did not produce a usable result; the round aborts and nothing is published."""


def _run_command(args: Sequence[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)


def _flwr() -> str:
    path = _BIN / "flwr"
    return str(path) if path.exists() else "flwr"


def _tail(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _json_out(stdout: str) -> dict[str, Any]:
    """The JSON object a ``flwr ... --format json`` call printed (ignoring anything before it)."""
    start = stdout.find("{")
    if start < 0:
        return {}
    try:
        doc = json.loads(stdout[start:])
    except json.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


# ------------------------------------------------------------------------------------ CLI setup


def flwr_env(settings: AggregatorSettings) -> dict[str, str]:
    """Environment of the aggregator's Flower CLI calls: its ``FLWR_HOME``, the venv's ``bin`` on ``PATH``."""
    env = dict(os.environ)
    env.update(
        {
            "FLWR_HOME": str(settings.flwr_home_dir),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PATH": f"{_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")])),
        }
    )
    return env


def _connection(settings: AggregatorSettings) -> dict[str, str]:
    if not settings.superlink_address:
        raise ValueError("PCF_AGG_SUPERLINK_ADDRESS is not set; the aggregator has no SuperLink to talk to")
    section = {"address": settings.superlink_address}
    if settings.superlink_root_certificates is not None:
        section["root-certificates"] = str(Path(settings.superlink_root_certificates).expanduser().absolute())
    return section


def write_flwr_config(settings: AggregatorSettings) -> str:
    """Make ``$FLWR_HOME/config.toml`` name the SuperLink as ``[superlink.<connection>]``; return the name.

    Other connections in the file are kept; the file is rewritten only when the section differs (so a
    read-only file provisioned with the same connection, as in the compose deployment, is fine).

    Raises
    ------
    ValueError
        No SuperLink configured, the file is not TOML, or it cannot be written.
    """
    name = settings.superlink_connection
    wanted = _connection(settings)
    path = settings.flwr_home_dir / "config.toml"
    with _config_lock:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        try:
            current = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            raise ValueError(f"{path}: not valid TOML; fix or remove it (the aggregator adds [superlink.{name}])") from None
        links = current.get("superlink", {})
        if links.get(name) == wanted:
            return name
        # Drop an outdated [superlink.<name>] block, then append the current one.
        kept: list[str] = []
        skipping = False
        for line in text.splitlines():
            if line.strip().startswith("["):
                skipping = line.strip() == f"[superlink.{name}]"
            if not skipping:
                kept.append(line)
        head = "" if links else f'[superlink]\ndefault = "{name}"\n\n'
        block = f"[superlink.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in wanted.items())
        body = "\n".join(kept).rstrip()
        new = head + (body + "\n\n" if body else "") + block
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".toml.tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            raise ValueError(
                f"{path}: cannot write the [superlink.{name}] connection ({exc.strerror}); provision it with "
                f"address = {wanted['address']!r} or make the file writable"
            ) from None
    return name


# ----------------------------------------------------------------------------------- registration


def register_supernode(
    settings: AggregatorSettings, supernode_public_key: str, *, run: CommandRunner = _run_command
) -> str:
    """Register a member's SuperNode public key with the SuperLink; return the node id it assigned.

    Parameters
    ----------
    settings
        Names the SuperLink (``superlink_address``, ``superlink_root_certificates``, ``flwr_home``).
    supernode_public_key
        The key from the member's enrolment (OpenSSH public key line).
    run
        Runs the ``flwr`` command (injectable for tests).

    Returns
    -------
    str
        The node id, a decimal string (Flower node ids are unsigned 64-bit).

    Raises
    ------
    RegistrationFailed
        The SuperLink refused the key or could not be reached; the message quotes ``flwr``'s output.
    """
    try:
        connection = write_flwr_config(settings)
    except ValueError as exc:
        raise RegistrationFailed(f"the Flower CLI is not set up: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="pcf-supernode-") as tmp:
        key_file = Path(tmp) / "supernode.pub"
        key_file.write_text(supernode_public_key.strip() + "\n", encoding="utf-8")
        args = [_flwr(), "supernode", "register", str(key_file), connection, "--format", "json"]
        try:
            out = run(args, flwr_env(settings), _CLI_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RegistrationFailed(
                f"could not run `flwr supernode register` against SuperLink {settings.superlink_address}: {exc}"
            ) from None
    doc = _json_out(out.stdout)
    node_id = doc.get("node-id")
    if out.returncode != 0 or not doc.get("success", True) or node_id is None or not re.fullmatch(r"[0-9]+", str(node_id)):
        detail = doc.get("error-message") or _tail(out.stderr or out.stdout) or f"exit code {out.returncode}"
        raise RegistrationFailed(
            f"SuperLink {settings.superlink_address} did not register the member's SuperNode key "
            f"({supernode_public_key.strip()[:40]}…): {detail}; the member stays pending. Accepted: an EC "
            "public key in OpenSSH format not registered before, and a reachable SuperLink"
        )
    return str(int(str(node_id)))


def supernode_registrar(settings: AggregatorSettings, *, run: CommandRunner = _run_command) -> SuperNodeRegistrar:
    """:func:`register_supernode` bound to ``settings``, as :func:`aggregator.members.approve_member` takes it."""
    return lambda key: register_supernode(settings, key, run=run)


def unregister_supernode(settings: AggregatorSettings, node_id: str, *, run: CommandRunner = _run_command) -> None:
    """Unregister a revoked member's SuperNode from the SuperLink, so it can no longer connect.

    Parameters
    ----------
    settings
        Names the SuperLink (``superlink_address``, ``superlink_root_certificates``, ``flwr_home``).
    node_id
        The node id the SuperLink assigned on approval (decimal string, unsigned 64-bit).
    run
        Runs the ``flwr`` command (injectable for tests).

    Raises
    ------
    UnregistrationFailed
        The node id is not one, or the SuperLink refused (e.g. the node is already unregistered) or
        could not be reached; the message quotes ``flwr``'s output.
    """
    if not re.fullmatch(r"[0-9]{1,20}", node_id) or int(node_id) >= 2**64:
        raise UnregistrationFailed(f"node id {node_id!r}: accepted: a decimal unsigned 64-bit Flower node id")
    try:
        connection = write_flwr_config(settings)
    except ValueError as exc:
        raise UnregistrationFailed(f"the Flower CLI is not set up: {exc}") from None
    args = [_flwr(), "supernode", "unregister", node_id, connection, "--format", "json"]
    try:
        out = run(args, flwr_env(settings), _CLI_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnregistrationFailed(
            f"could not run `flwr supernode unregister` against SuperLink {settings.superlink_address}: {exc}"
        ) from None
    doc = _json_out(out.stdout)
    if out.returncode != 0 or doc.get("success") is not True:
        detail = doc.get("error-message") or _tail(out.stderr or out.stdout) or f"exit code {out.returncode}"
        raise UnregistrationFailed(
            f"SuperLink {settings.superlink_address} did not unregister SuperNode {node_id}: {detail}. "
            f"Retry by revoking the member again, or run `flwr supernode unregister {node_id} {connection}` "
            f"with FLWR_HOME={settings.flwr_home_dir}"
        )


def supernode_unregistrar(settings: AggregatorSettings, *, run: CommandRunner = _run_command) -> SuperNodeUnregistrar:
    """:func:`unregister_supernode` bound to ``settings``, as :func:`aggregator.members.revoke_member` takes it."""
    return lambda node_id: unregister_supernode(settings, node_id, run=run)


# -------------------------------------------------------------------------------------- the FAB

def write_fab_project(directory: Path, *, serverapp: str = SERVER_APP, clientapp: str = CLIENT_APP) -> Path:
    """Write the Flower App project ``flwr run`` bundles: a pyproject naming installed components.

    The components live in this repository's installed packages, so the bundle carries no code. The
    text is :func:`protocols.fab.fab_pyproject`: a node runs a round only if the FAB is the one its
    own installed package builds for the named ServerApp (``node.clientapp_runner``), so a FAB
    naming another ClientApp, or carrying modules, is refused by every node.
    """
    text = fab_pyproject(serverapp=serverapp, clientapp=clientapp)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(text)
    return directory


def run_config_toml(values: Mapping[str, str | int | float]) -> str:
    """TOML of run-config overrides (``flwr run --run-config <file>.toml``); strings are JSON-escaped."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TypeError(f"run config {key!r} = {value!r}: accepted: str, int, float")
        lines.append(f"{key} = {json.dumps(value) if isinstance(value, str) else repr(value)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- runner


@dataclass
class _Session:
    """The Flower run of one round, between its stages."""

    run_id: str
    run_dir: Path
    connection: str
    env: Mapping[str, str]
    deadline: float
    """``time.monotonic()`` by which the whole run must be done."""
    nodes: frozenset[int]
    """The run's roster: every later stage sums over some of them."""
    handovers: int = 0


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(path)  # the ServerApp never reads a half-written hand-over


class FlowerSecAggRunner:
    """``run(spec, roster, stage)`` over the SuperLink (the :data:`aggregator.rounds.SecAggRunner` interface).

    The first stage of a round starts its Flower run; each later stage of the same round is handed to
    that run's ServerApp, so a round pays Flower's run start-up once. :meth:`end` MUST be called
    when the round has no further stage (it stops the ServerApp waiting); a failed stage ends the
    run itself.

    Parameters
    ----------
    settings
        SuperLink connection, ``FLWR_HOME``, time limits, optional ``flower_record_path``.
    serverapp, clientapp
        Components of the FAB (the plain-sum control of the canary test uses others).
    record_path
        Where the ServerApp records every message it receives; default ``settings.flower_record_path``.
    run
        Runs the ``flwr`` commands (injectable for tests).
    clock
        Time source, for the spec's deadline.
    """

    def __init__(
        self,
        settings: AggregatorSettings,
        *,
        serverapp: str = SERVER_APP,
        clientapp: str = CLIENT_APP,
        record_path: Path | None = None,
        run: CommandRunner = _run_command,
        clock: Callable[[], datetime] = utcnow,
        poll_interval: float = 0.2,
    ) -> None:
        self.settings = settings
        self.serverapp = serverapp
        self.clientapp = clientapp
        self.record_path = record_path if record_path is not None else settings.flower_record_path
        self.run = run
        self.clock = clock
        self.poll_interval = poll_interval
        self.last_run_dir: Path | None = None
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def __call__(self, spec: RoundSpec, roster: list[RosterEntry], run: StageRun) -> StageSum:
        """Run one disclosure stage of the round; return its signed slot sums and whose inputs they cover.

        The stage's secagg round id is ``<round id>/<stage>``; its advertise requests carry the
        aggregator-signed stage context, which each node verifies before it computes its stage
        vector (``node.flower_client``). The round's first call starts its Flower run; later calls
        hand the stage (participants: ``roster``, the screen's cohort) to the same run.

        Raises
        ------
        FlowerRunFailed
            Too small a roster, the deadline passed, ``flwr run`` refused, the run failed or was
            stopped, or no result within the time limit (the run is then stopped). The round's run
            is over after any of these.
        """
        nodes = {int(e.flower_node_id): e.identity_public_key for e in roster if e.flower_node_id is not None}
        try:
            params = self._params(spec, nodes)
        except FlowerRunFailed:
            self.end(spec)
            raise
        with self._lock:
            session = self._sessions.get(spec.round_id)
        stage_params: dict[str, Any] = {
            "round_id": stage_round_id(spec.round_id, run.stage),
            "vector_length": run.length,
            "participants": sorted(nodes),
            **params,
            "stage_context": run.context.model_dump_json() if run.context is not None else "",
        }
        if session is None:
            session = self._start(spec, nodes, run, stage_params)
        elif not set(nodes) <= session.nodes:
            self.end(spec)
            raise FlowerRunFailed(
                f"round {spec.round_id!r}: stage {run.stage} names node(s) {sorted(set(nodes) - session.nodes)} "
                f"outside the roster its Flower run {session.run_id} started with; the run is ended"
            )
        else:
            session.handovers += 1
            _write_json(session.run_dir / NEXT_STAGE_FILE.format(session.handovers), {"stage": str(run.stage), **stage_params})
            log.info("round %s: stage %s handed to Flower run %s", spec.round_id, run.stage, session.run_id)
        result_path = session.run_dir / f"result-{run.stage}.json"
        try:
            result = self._wait(spec.round_id, session.run_id, result_path, session.connection, session.env, session.deadline)
            if "error" in result:
                raise FlowerRunFailed(f"round {spec.round_id!r}: the ServerApp failed: {result['error']}")
            summed, contributors = self._check(spec, nodes, result, run)
        except FlowerRunFailed:
            self.end(spec)
            raise
        return StageSum(summed, [nodes[c] for c in contributors])

    def end(self, spec: RoundSpec) -> None:
        """End the round's Flower run: its ServerApp stops waiting for a further stage and exits (idempotent)."""
        with self._lock:
            session = self._sessions.pop(spec.round_id, None)
        if session is None:
            return
        try:
            (session.run_dir / STOP_FILE).write_text("{}", encoding="utf-8")
        except OSError as exc:  # the ServerApp then waits out the run's time limit; the round is decided anyway
            log.warning("round %s: could not tell Flower run %s to stop: %s", spec.round_id, session.run_id, exc)

    def _params(self, spec: RoundSpec, nodes: Mapping[int, str]) -> dict[str, int]:
        if len(nodes) < max(spec.min_participants, 2):
            raise FlowerRunFailed(
                f"round {spec.round_id!r}: {len(nodes)} roster member(s) with a SuperNode node id; "
                f"at least {max(spec.min_participants, 2)} are needed"
            )
        try:
            value_bits = secagg_value_bits(spec, len(nodes))
        except ValueError as exc:
            raise FlowerRunFailed(f"round {spec.round_id!r}: {exc}") from None
        degree = spec_degree(spec, len(nodes))
        # The smallest threshold the nodes accept (protocols.secagg_policy.RoundPolicy.check).
        threshold = required_threshold(spec.min_participants, spec.secagg.threshold_fraction, degree + 1)
        if threshold > degree + 1:
            raise FlowerRunFailed(
                f"round {spec.round_id!r}: threshold {threshold} (min_participants {spec.min_participants}) exceeds "
                f"the {degree + 1} share holders of each firm; accepted: a larger neighbourhood_size or roster"
            )
        return {"threshold": threshold, "degree": degree, "value_bits": value_bits}

    def _start(
        self, spec: RoundSpec, nodes: Mapping[int, str], run: StageRun, stage: Mapping[str, Any]
    ) -> _Session:
        """Write the run's project, roster and config, and ``flwr run`` it with ``run``'s stage first."""
        wait = min(self.settings.flower_run_timeout_seconds, (spec.deadline - self.clock()).total_seconds())
        if wait <= 0:
            raise FlowerRunFailed(
                f"round {spec.round_id!r}: its deadline {spec.deadline.isoformat()} has passed; members approved "
                "contributing before it, so the round is not run"
            )
        run_dir = self.settings.home / "flower-runs" / f"{spec.round_id}-{uuid.uuid4().hex[:8]}"
        run_dir.mkdir(parents=True, exist_ok=False)
        self.last_run_dir = run_dir
        app_dir = write_fab_project(run_dir / "app", serverapp=self.serverapp, clientapp=self.clientapp)
        roster_path = run_dir / "roster.json"
        roster_path.write_text(json.dumps({str(n): k for n, k in sorted(nodes.items())}), encoding="utf-8")
        config: dict[str, str | int | float] = {
            "round-id": stage["round_id"],
            "vector-length": stage["vector_length"],
            "stage": str(run.stage),
            "stage-context": stage["stage_context"],
            "value-bits": stage["value_bits"],
            "roster-path": str(roster_path),
            "participants": ",".join(str(n) for n in stage["participants"]),
            "threshold": stage["threshold"],
            "degree": stage["degree"],
            "stage-timeout": float(self.settings.flower_stage_timeout_seconds),
            "connect-timeout": float(self.settings.flower_connect_timeout_seconds),
            "result-path": str(run_dir / f"result-{run.stage}.json"),
            "record-path": str(self.record_path) if self.record_path is not None else "",
            # the ServerApp waits for the round's later stages until the run's time limit
            "run-timeout": float(wait),
        }
        config_path = run_dir / "run-config.toml"
        config_path.write_text(run_config_toml(config), encoding="utf-8")

        try:
            connection = write_flwr_config(self.settings)
        except ValueError as exc:
            raise FlowerRunFailed(f"round {spec.round_id!r}: the Flower CLI is not set up: {exc}") from None
        env = flwr_env(self.settings)
        started = time.monotonic()
        out = self._flwr(["run", str(app_dir), connection, "--run-config", str(config_path), "--format", "json"], env)
        doc = _json_out(out.stdout)
        if out.returncode != 0 or not doc.get("success") or not doc.get("run-id"):
            raise FlowerRunFailed(
                f"round {spec.round_id!r}: `flwr run` was refused by SuperLink {self.settings.superlink_address}: "
                f"{doc.get('error-message') or _tail(out.stderr or out.stdout)}"
            )
        run_id = str(doc["run-id"])
        log.info("round %s: Flower run %s started (%s nodes, value bits %s)", spec.round_id, run_id, len(nodes),
                 stage["value_bits"])  # fmt: skip
        session = _Session(run_id, run_dir, connection, env, started + wait, frozenset(nodes))
        with self._lock:
            self._sessions[spec.round_id] = session
        return session

    def _flwr(self, args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        try:
            return self.run([_flwr(), *args], env, _CLI_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FlowerRunFailed(f"`flwr {args[0]}` could not run: {exc}") from None

    def _status(self, run_id: str, connection: str, env: Mapping[str, str]) -> str:
        out = self._flwr(["ls", connection, "--run-id", run_id, "--format", "json"], env)
        runs = _json_out(out.stdout).get("runs") or []
        return str(runs[0].get("status", "")) if runs and isinstance(runs[0], dict) else ""

    def _wait(
        self, round_id: str, run_id: str, result_path: Path, connection: str, env: Mapping[str, str], deadline: float
    ) -> dict[str, Any]:
        next_status = time.monotonic() + _STATUS_EVERY
        while time.monotonic() < deadline:
            if result_path.exists():
                doc: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
                # The full sum, withheld components included, must not outlive this call: the round
                # stores only what the disclosure rules keep (aggregator.rounds.stored_summed).
                try:
                    result_path.unlink()
                except OSError as exc:  # not worth failing the round over; say so loudly
                    log.warning("round %s: could not remove the run's full sum %s: %s", round_id, result_path, exc)
                return doc
            if time.monotonic() >= next_status:
                status = self._status(run_id, connection, env)
                if status.startswith("finished") and not result_path.exists():
                    raise FlowerRunFailed(f"round {round_id!r}: Flower run {run_id} ended {status!r} without a result")
                next_status = time.monotonic() + _STATUS_EVERY
            time.sleep(self.poll_interval)
        self._flwr(["stop", run_id, connection], env)
        raise FlowerRunFailed(f"round {round_id!r}: no result from Flower run {run_id} in time; the run was stopped")

    @staticmethod
    def _check(
        spec: RoundSpec, nodes: Mapping[int, str], result: Mapping[str, Any], run: StageRun
    ) -> tuple[list[int], list[int]]:
        length = run.length
        round_id = stage_round_id(spec.round_id, run.stage)
        try:
            summed = [int(v) for v in result["total_signed"]]
            contributors = [int(c) for c in result["contributors"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise FlowerRunFailed(f"round {spec.round_id!r}: malformed result ({exc})") from None
        if result.get("round_id") != round_id or len(summed) != length:
            raise FlowerRunFailed(
                f"round {spec.round_id!r}: the result is for round {result.get('round_id')!r} with {len(summed)} "
                f"values; expected {round_id!r} with {length}"
            )
        strangers = sorted(set(contributors) - set(nodes))
        if strangers or len(set(contributors)) != len(contributors):
            raise FlowerRunFailed(f"round {spec.round_id!r}: contributors {strangers or contributors} are not the roster's")
        return summed, contributors
