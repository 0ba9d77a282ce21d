"""Real aggregator (and delivery receiver) processes on loopback ports for the aggregator's HTTP tests.

``AggServer`` starts ``python -m uvicorn agg_server:make_app --factory`` in a subprocess, waits for
``/health`` and stops it by its pid (``kill()`` simulates a crash with SIGKILL). ``make_app``
reads the usual ``PCF_AGG_*`` settings plus two test knobs for the fake secure-aggregation runner:

``AGG_TEST_INPUTS``
    JSON file mapping member fingerprint -> list of slot integers; the runner sums the rows of
    the roster members present in it (an in-process stand-in for the Flower SuperLink);
``AGG_TEST_RUNNER_DELAY``
    seconds the runner sleeps first, so a test can kill the server mid-round.

``make_receiver`` is a tiny delivery receiver: it answers 503 to the first
``AGG_TEST_RECEIVER_FAILS`` requests, then 200, and lists what it got at ``GET /received``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

__all__ = ["AggServer", "make_app", "make_receiver"]


def _fake_runner(inputs_path: str | None, delay: float) -> Any:
    def run_secagg(spec: Any, roster: Sequence[Any]) -> tuple[list[int], int]:
        if delay:
            time.sleep(delay)
        table: dict[str, list[int]] = json.loads(Path(inputs_path).read_text()) if inputs_path else {}
        rows = [table[m.fingerprint] for m in roster if m.fingerprint in table]
        if not rows:
            return [], 0
        return [sum(col) for col in zip(*rows, strict=True)], len(rows)

    return run_secagg


def make_app() -> Any:
    """The aggregator app with the fake secagg runner (uvicorn ``--factory`` target)."""
    from aggregator.app import create_app
    from aggregator.settings import AggregatorSettings

    runner = _fake_runner(os.environ.get("AGG_TEST_INPUTS"), float(os.environ.get("AGG_TEST_RUNNER_DELAY", "0")))
    return create_app(AggregatorSettings(), runner=runner)  # type: ignore[call-arg]


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
    """One uvicorn process on a loopback port, stopped by its pid."""

    def __init__(self, target: str, port: int, env: dict[str, str], log_path: Path):
        self.target, self.port, self.env, self.log_path = target, port, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> AggServer:
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", self.target, "--factory",
                    "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "warning",
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
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
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
