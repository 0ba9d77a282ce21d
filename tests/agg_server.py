"""Real aggregator (and delivery receiver) processes on loopback ports for the aggregator's HTTP tests.

``AggServer`` starts ``python -m uvicorn agg_server:make_app --factory`` in a subprocess, waits for
``/health`` and stops it by its pid (``kill()`` simulates a crash with SIGKILL). It serves HTTPS, as
``pcf agg serve`` does (proxy headers off), with a certificate from the session's test CA
(:func:`session_tls`) unless given other TLS files (an impersonator) or ``tls=False`` (a receiver, or
a plain-HTTP aggregator). :data:`https` is ``httpx.get/post/request`` trusting that CA.
``make_app`` reads the usual ``PCF_AGG_*`` settings plus two test knobs for the fake secure-aggregation runner:

``AGG_TEST_INPUTS``
    JSON file mapping member fingerprint -> list of slot integers; the runner sums the rows of
    the roster members present in it (an in-process stand-in for the Flower SuperLink);
``AGG_TEST_RUNNER_DELAY``
    seconds the runner sleeps first, so a test can kill the server mid-round;
``AGG_TEST_REQUEST_LOG``
    file the server appends one JSON line to per HTTP request it receives (method, path, header
    names): what an impersonating server got from a node.

``make_receiver`` is a tiny delivery receiver: it answers 503 to the first
``AGG_TEST_RECEIVER_FAILS`` requests, then 200, and lists what it got at ``GET /received``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from keys.tls import TlsFiles, client_context, write_tls_files

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

__all__ = ["AggServer", "Https", "https", "make_app", "make_receiver", "session_tls"]


@cache
def session_tls() -> TlsFiles:
    """One CA and aggregator certificate (``127.0.0.1``, ``localhost``) for the whole test session."""
    folder = tempfile.mkdtemp(prefix="pcf-test-tls-")
    atexit.register(shutil.rmtree, folder, True)
    return write_tls_files(folder, aggregator_hosts=["127.0.0.1"])


class Https:
    """``httpx.get`` / ``post`` / ``request`` trusting ``ca`` (default: the session's test CA), nothing else."""

    def __init__(self, ca: Path | None = None):
        self._ca = ca

    def context(self) -> ssl.SSLContext:
        return client_context((self._ca or session_tls().ca_cert).read_text(encoding="ascii"))

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, url, verify=self.context(), trust_env=False, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(verify=self.context(), trust_env=False, **kwargs)


https = Https()


def _fake_runner(inputs_path: str | None, delay: float) -> Any:
    """Sums every disclosure stage in the clear from the members' full vectors in ``inputs_path`` (fingerprint -> ints)."""
    from stage_runner import stage_runner

    def rows_of(spec: Any, roster: Sequence[Any]) -> dict[str, list[int]]:
        if delay:
            time.sleep(delay)
        table: dict[str, list[int]] = json.loads(Path(inputs_path).read_text()) if inputs_path else {}
        return {m.identity_public_key: table[m.fingerprint] for m in roster if m.fingerprint in table}

    return stage_runner(rows_of)


def make_app() -> Any:
    """The aggregator app with the fake secagg runner (uvicorn ``--factory`` target)."""
    from aggregator.app import create_app
    from aggregator.settings import AggregatorSettings

    runner = _fake_runner(os.environ.get("AGG_TEST_INPUTS"), float(os.environ.get("AGG_TEST_RUNNER_DELAY", "0")))
    app = create_app(AggregatorSettings(), runner=runner)  # type: ignore[call-arg]
    claimed = os.environ.get("AGG_TEST_CLAIM_KEY")
    if claimed is not None:
        _claim_key(app, claimed)
    record = os.environ.get("AGG_TEST_REQUEST_LOG")
    return app if record is None else _recording(app, Path(record))


def _claim_key(app: Any, claimed: str) -> None:
    """Make ``app`` show ``claimed`` as its identity key (an impostor copying the real aggregator's public key)."""
    from fastapi.responses import Response

    @app.middleware("http")
    async def claim(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path != "/api/v1/aggregator" or response.status_code != 200:
            return response
        body = json.loads(b"".join([chunk async for chunk in response.body_iterator]))
        body["public_key"] = claimed  # the challenge signature stays this server's own
        return Response(json.dumps(body), media_type="application/json")


def _recording(app: Any, path: Path) -> Any:
    """``app`` behind an ASGI wrapper that logs every HTTP request it receives to ``path``."""

    async def recorded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            names = sorted({k.decode("latin-1").lower() for k, _ in scope.get("headers", [])})
            with path.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"method": scope["method"], "path": scope["path"], "headers": names}) + "\n")
        await app(scope, receive, send)

    return recorded


def make_receiver() -> Any:
    """A delivery receiver that fails the first ``AGG_TEST_RECEIVER_FAILS`` requests with 503."""
    fails = int(os.environ.get("AGG_TEST_RECEIVER_FAILS", "0"))
    app = FastAPI()
    got: list[dict[str, Any]] = []
    seen = {"requests": 0}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/factors")
    async def receive(request: Request) -> JSONResponse:
        seen["requests"] += 1
        if seen["requests"] <= fails:
            return JSONResponse({"error": "busy"}, status_code=503)
        body = await request.json()
        got.append({"idempotency_key": request.headers.get("Idempotency-Key"), "package": body})
        return JSONResponse({"accepted": True, "receipt_id": f"r-{len(got)}"}, status_code=201)

    @app.get("/received")
    def received() -> dict[str, Any]:
        return {"requests": seen["requests"], "accepted": got}

    return app


class AggServer:
    """One uvicorn process on a loopback port, stopped by its pid.

    ``tls``: ``True`` serves HTTPS with the session's test certificate, a :class:`TlsFiles` with
    its aggregator certificate (another CA: an impersonator), ``False`` plain HTTP.
    """

    def __init__(self, target: str, port: int, env: dict[str, str], log_path: Path, *, tls: bool | TlsFiles = True):
        self.target, self.port, self.env, self.log_path = target, port, env, log_path
        self.tls: TlsFiles | None = (session_tls() if tls is True else tls) or None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        """The CA certificate this server's certificate chains to (what a node pins with ``--ca``)."""
        assert self.tls is not None, "a plain-HTTP server has no CA"
        return self.tls.ca_cert

    def start(self, timeout: float = 30.0) -> AggServer:
        env = {**os.environ, **self.env}
        served: list[str] = []
        if self.tls is not None:
            assert self.tls.aggregator_cert is not None and self.tls.aggregator_key is not None
            served = ["--ssl-certfile", str(self.tls.aggregator_cert), "--ssl-keyfile", str(self.tls.aggregator_key)]
        client = Https(self.tls.ca_cert if self.tls else None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", self.target, "--factory",
                    "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "warning", "--no-proxy-headers", *served,
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.target} exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if client.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.target} did not answer /health within {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """Crash: SIGKILL by pid, no shutdown handlers."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """Graceful stop: SIGTERM by pid, SIGKILL after 10 s."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
