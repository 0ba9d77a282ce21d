"""The in-process test tier: an ASGI app behind ``httpx.ASGITransport``, with a synchronous face.

The HTTP tests that do not prove deployment call the app in the test process, no socket and no
server process; the tests that prove deployment keep starting real uvicorn servers on loopback.
``httpx.ASGITransport`` serves only ``httpx.AsyncClient``, and the tests are synchronous, so
:class:`InProcessClient` runs the async client on an anyio blocking portal (one event loop in a
thread for the client's lifetime) and exposes the ``httpx.Client`` methods the tests use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import anyio.from_thread
import httpx

__all__ = ["InProcessClient", "in_process_client"]


class InProcessClient:
    """``httpx.Client``-like calls (``get``, ``post``, ``head``, ``request``...) into an ASGI app."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, app: Any, base_url: str):
        self._portal = portal
        self.base_url = httpx.URL(base_url)
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
        self.event_hooks: dict[str, list[Callable[[Any], Any]]] = {"request": [], "response": []}
        """Synchronous hooks, as ``httpx.Client`` runs them (the node's outbox records requests here)."""

    def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        send_options = {key: kwargs.pop(key) for key in ("auth", "follow_redirects") if key in kwargs}

        async def call() -> httpx.Response:
            request = self._client.build_request(method, url, **kwargs)
            for hook in self.event_hooks.get("request", []):
                hook(request)
            response = await self._client.send(request, **send_options)
            await response.aread()
            for hook in self.event_hooks.get("response", []):
                hook(response)
            return response

        return self._portal.call(call)

    def get(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def aclose_in_portal(self) -> None:
        self._portal.call(self._client.aclose)


@contextmanager
def in_process_client(app: Any, base_url: str = "http://testserver") -> Iterator[InProcessClient]:
    """An :class:`InProcessClient` for ``app``; its event loop stops when the block ends."""
    portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = anyio.from_thread.start_blocking_portal()
    with portal_cm as portal:
        client = InProcessClient(portal, app, base_url)
        try:
            yield client
        finally:
            client.aclose_in_portal()
