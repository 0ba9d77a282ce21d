"""The node's own ClientApp runner: only the firm's installed code runs, and every reply is in the outbox.

Why. The SuperLink's operator (the aggregator) writes the FAB ``flwr run`` ships: it names the
ClientApp and may carry modules. A stock SuperNode installs it and runs whatever it names, so the
operator decides what code runs on a firm's machine. Flower's ``--trusted-entities`` is no defence
here: it trusts the ``verifications`` the *SuperLink* attaches to a FAB (a licence flag and a
signature), i.e. the adversary's word, and a locally submitted FAB has none.

Design. ``pcf node supernode`` (:func:`run_supernode`) starts ``flower-supernode`` with
``--isolation process``: the SuperNode then starts no ClientApp process of its own, it only queues
tasks on its Runtime API (loopback). This runner, started by the node in the same command, is the
only one that takes those tasks (:func:`serve`). For each task it

1. pulls the message, context and FAB (never extracting, installing or importing the FAB);
2. checks the FAB (:func:`check_fab`): its members must be ``pyproject.toml`` and Flower's manifest
   only (no module), its ClientApp must be :data:`protocols.fab.APPROVED_CLIENTAPP`, and its SHA-256
   must equal that of the FAB this node's *installed* package builds for the ServerApp the FAB names
   (:func:`protocols.fab.build_fab`; the ServerApp is free because it is the server's own code, and
   the protocols hold against any ServerApp), or be a hash the firm approved
   (:func:`approve_fab`, ``pcf node fab approve HASH``);
3. runs :data:`node.flower_client.client_app` imported from the installed package (never code
   named by the FAB), or, when the FAB is refused, replies with an error that says why;
4. makes sure the reply is in the outbox (:func:`record_reply`: SHA-256 of exactly the bytes
   :func:`protocols.flower_apps.message_payload` gives, which the recording ServerApp keeps too;
   the ClientApp's own entry stands when it logged the same bytes), and only then pushes it to
   the SuperNode, which relays it to the SuperLink. The runner is the one layer every reply passes.

So nothing the operator ships is ever executed on the node, whatever it is: an extra module, a
plaintext ClientApp, a different release. Approving a hash never lets code in (step 2's structural
checks still apply); it only accepts a differently written project file, e.g. a new release's
FAB the aggregator runs before the firm upgrades. A firm approves a new release by installing it
(its node then builds that release's FAB) or, meanwhile, by approving the FAB hash the release
publishes after comparing it with ``pcf node fab hash`` run on the new release.

What stays assumed: the firm's machine (its Python environment is the trusted code base), and that
no other local process takes tasks from the SuperNode's loopback Runtime API.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from node.rounds import log_outbound, outbox, outbox_round
from node.store import NodeStore, OutboxRow
from protocols.fab import APPROVED_CLIENTAPP, FAB_FILES, build_fab, fab_hash
from protocols.flower_apps import RecordKey, message_payload

__all__ = [
    "APPROVED_FABS_SETTING",
    "FAB_REFUSED",
    "FabVerdict",
    "approve_fab",
    "approved_fabs",
    "check_fab",
    "record_reply",
    "run_supernode",
    "run_task",
    "serve",
]

log = logging.getLogger(__name__)

APPROVED_FABS_SETTING: Final = "approved_fab_hashes"
"""Node setting: JSON list of FAB SHA-256 hashes the firm approved besides its own build's."""

FAB_REFUSED: Final = "refused:fab"
"""Outbox stage of the error reply to a task whose FAB was refused."""

_MAX_PYPROJECT = 64 * 1024
_RUNTIME_DEFAULT_PORT = 9094


# ----------------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class FabVerdict:
    """Whether a FAB may run on this node, its hash, and (when refused) why, as the firm reads it."""

    accepted: bool
    fab_hash: str
    reason: str = ""


def _refuse(digest: str, why: str) -> FabVerdict:
    return FabVerdict(False, digest, f"FAB {digest[:16]} refused: {why}; this node runs only the ClientApp "
                                     f"{APPROVED_CLIENTAPP} of its installed package")


def check_fab(content: bytes, approved: Collection[str] = ()) -> FabVerdict:
    """Decide whether a FAB may run on this node; the FAB is only read, in memory, never executed.

    Parameters
    ----------
    content
        The FAB's bytes as the SuperNode received them from the SuperLink.
    approved
        FAB hashes the firm approved (:func:`approved_fabs`), besides its own build's.

    Returns
    -------
    FabVerdict
        Accepted iff the FAB holds exactly ``pyproject.toml`` and ``.info/CONTENT``, names
        :data:`~protocols.fab.APPROVED_CLIENTAPP`, and its hash is that of this node's own build for
        the ServerApp it names, or in ``approved``.
    """
    digest = fab_hash(content)
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as fab:
            names = sorted(fab.namelist())
            info = fab.getinfo("pyproject.toml")
            if info.file_size > _MAX_PYPROJECT:
                return _refuse(digest, f"its pyproject.toml is {info.file_size} bytes (at most {_MAX_PYPROJECT})")
            config: dict[str, Any] = tomllib.loads(fab.read(info).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as exc:
        return _refuse(digest, f"not a readable Flower App Bundle ({type(exc).__name__}: {exc})")
    extra = [n for n in names if n not in FAB_FILES]
    if extra:
        return _refuse(digest, f"it carries files {extra[:5]}{' …' if len(extra) > 5 else ''}; a round's FAB "
                               f"holds only {sorted(FAB_FILES)}, never code")
    components = config.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    clientapp, serverapp = components.get("clientapp"), components.get("serverapp")
    if clientapp != APPROVED_CLIENTAPP:
        return _refuse(digest, f"it names the ClientApp {clientapp!r}")
    if digest in approved:
        return FabVerdict(True, digest)
    try:
        own = _own_fab_hash(str(serverapp))
    except ValueError as exc:
        return _refuse(digest, f"its ServerApp reference is not one ({exc})")
    if digest != own:
        return _refuse(digest, f"it is not the FAB this node's installed package builds ({own[:16]}) and the firm "
                               "has not approved its hash (pcf node fab approve HASH)")
    return FabVerdict(True, digest)


@functools.lru_cache(maxsize=16)
def _own_fab_hash(serverapp: str) -> str:
    return fab_hash(build_fab(serverapp=serverapp))


def approved_fabs(store: NodeStore) -> set[str]:
    """FAB hashes the firm approved (``pcf node fab approve``)."""
    raw = store.get_setting(APPROVED_FABS_SETTING)
    return set(json.loads(raw)) if raw else set()


def approve_fab(store: NodeStore, digest: str) -> set[str]:
    """Add a FAB hash (64 hex digits) to the firm's approvals; returns them all."""
    digest = digest.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"FAB hash {digest!r}: accepted: the 64 hex digits of its SHA-256 (pcf node fab hash)")
    hashes = approved_fabs(store) | {digest}
    store.set_setting(APPROVED_FABS_SETTING, json.dumps(sorted(hashes)))
    return hashes


# ------------------------------------------------------------------------------------ the outbox


def _round_and_stage(message: Message, reply: Message, refused: bool) -> tuple[str, str]:
    source = reply if reply.has_content() else message
    cfg = source.content.config_records.get(RecordKey.CONFIG) if source.has_content() else None
    round_id, disclosure = outbox_round(str(cfg.get(RecordKey.ROUND_ID, "?")) if cfg is not None else "?")
    stage = str(cfg.get(RecordKey.STAGE, "?")) if cfg is not None else "?"
    if refused:
        return round_id, FAB_REFUSED
    if reply.has_error():
        return round_id, f"secagg:refused:{disclosure}{stage}"
    return round_id, f"secagg:{disclosure}{stage}" if cfg is not None else f"reply:{message.metadata.message_type}"


def record_reply(store: NodeStore, message: Message, reply: Message, *, fab_refused: bool = False) -> OutboxRow:
    """Make sure ``reply`` (to ``message``) is in the outbox: SHA-256 of exactly :func:`message_payload`.

    The ClientApp may already have logged it (same round, same hash): then that entry stands.
    """
    round_id, stage = _round_and_stage(message, reply, fab_refused)
    payload = message_payload(reply)
    digest = hashlib.sha256(payload).hexdigest()
    for row in reversed(outbox(store, round_id)):
        if row.sha256 == digest:
            return row
    return log_outbound(store, round_id, "superlink", stage, payload)


# -------------------------------------------------------------------------------------- the runner


def _client(address: str, component: str, token: str | None = None) -> RuntimeHttpClient:
    interceptors: list[Any] = [RuntimeVersionHttpInterceptor(component_name=component)]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(
        server_address=address, insecure=True, root_certificates=None, interceptors=interceptors,
        retry_invoker=make_simple_http_retry_invoker(),
    )  # fmt: skip


def run_task(address: str, token: str, store_factory: Callable[[], NodeStore], app: ClientApp) -> FabVerdict | None:
    """Run one ClientApp task of the SuperNode at ``address``: check the FAB, answer, record, push.

    Returns the FAB verdict (None when the task input could not be pulled).
    """
    client = _client(address, "flwr-clientapp", token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    message: Message | None = None
    context: Context | None = None
    reply: Message | None = None
    verdict: FabVerdict | None = None
    status, details = SubStatus.FAILED, "ClientApp task failed"
    try:
        message, context, _run, fab = pull_task_input(client)
        store = store_factory()
        try:
            verdict = check_fab(fab.content, approved_fabs(store))
        finally:
            store.close()
        if verdict.accepted:
            reply = app(message=message, context=context)
            status, details = SubStatus.COMPLETED, ""
        else:
            log.error("run %s: %s", context.run_id, verdict.reason)
            reply = Message(Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=verdict.reason), reply_to=message)
            details = verdict.reason
    except Exception as exc:
        log.exception("ClientApp task failed")
        details = f"{type(exc).__name__}: {exc}"
        if message is not None:
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
    finally:
        try:
            if reply is not None and message is not None and context is not None:
                store = store_factory()
                try:
                    # before it leaves: nothing leaves unrecorded
                    record_reply(store, message, reply, fab_refused=verdict is not None and not verdict.accepted)
                finally:
                    store.close()
                push_message(client, reply, context)
        except Exception:
            log.exception("the reply was not sent")
            status = SubStatus.FAILED
        push_task_output(client, context, status, details)
        heartbeat.stop()
        client.close()
    return verdict


def serve(address: str, store_factory: Callable[[], NodeStore], *, app: ClientApp | None = None,
          poll_interval: float = 0.1, stop: threading.Event | None = None) -> None:
    """Take the ClientApp tasks of the SuperNode's Runtime API at ``address``, one at a time, until ``stop``."""
    if app is None:
        from node.flower_client import client_app

        app = client_app
    stop = stop or threading.Event()
    client = _client(address, "SuperExec")
    try:
        while not stop.is_set():
            try:
                res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
            except Exception as exc:  # noqa: BLE001 -- the SuperNode may not be up yet, or restarting
                log.debug("Runtime API at %s not answering: %s", address, exc)
                stop.wait(1.0)
                continue
            if res.HasField("task") and res.token:
                run_task(address, res.token, store_factory, app)
            else:
                stop.wait(poll_interval)
    finally:
        client.close()


# ----------------------------------------------------------------------------- the SuperNode itself


def _option(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def supernode_command(flower_args: Sequence[str], home: Path) -> tuple[list[str], str]:
    """The ``flower-supernode`` command line (process isolation forced) and its Runtime API address.

    Raises
    ------
    ValueError
        ``--isolation`` is given (the gate needs ``process``), or ``--host`` is not a loopback address.
    """
    args = list(flower_args)
    for arg in args:
        # flower-supernode's parser takes unique prefixes (--hos 0.0.0.0 would mean --host): refuse them
        flag = arg.split("=", 1)[0]
        for name in ("--isolation", "--host"):
            if flag != name and len(flag) > 2 and name.startswith(flag):
                raise ValueError(f"{flag}: give {name} in full (an abbreviation would escape this check)")
    if _option(args, "--isolation") is not None:
        raise ValueError("--isolation: not accepted; pcf node supernode always runs --isolation process, so that "
                         "only this node's installed ClientApp runs")
    host = _option(args, "--host") or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"--host {host}: accepted: a loopback address (the Runtime API hands out the node's tasks)")
    port = _option(args, "--port") or str(_RUNTIME_DEFAULT_PORT)
    if _option(args, "--node-config") is None:
        args += ["--node-config", f'pcf-home="{home}"']
    binary = Path(sys.executable).parent / "flower-supernode"
    command = [str(binary) if binary.exists() else "flower-supernode", *args, "--isolation", "process"]
    return command, f"{'[::1]' if host == '::1' else host}:{port}"


def run_supernode(flower_args: Sequence[str], home: Path, store_factory: Callable[[], NodeStore], *,
                  poll_interval: float = 0.1) -> int:
    """Run ``flower-supernode`` (process isolation) and this node's runner until the SuperNode exits.

    SIGTERM and SIGINT are passed on to the SuperNode; returns its exit code.
    """
    command, address = supernode_command(flower_args, home)
    proc = subprocess.Popen(command, env=dict(os.environ))

    def _forward(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(address, store_factory),
                              kwargs={"poll_interval": poll_interval, "stop": stop}, name="pcf-clientapp-runner",
                              daemon=True)  # fmt: skip
    worker.start()
    code = proc.wait()
    stop.set()
    worker.join(timeout=5)  # a thread blocked in a Runtime API retry is dropped with the process
    return code
