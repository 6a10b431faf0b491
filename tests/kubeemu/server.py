"""`Emulator`: the API server on its own thread and event loop, for tests and for kubectl."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from tests.kubeemu.api import Api
from tests.kubeemu.rest import RestServer

RequestRecord = tuple[str, str, str, str, int]


class Emulator:
    """A Kubernetes API server emulator serving plain HTTP on loopback.

    `start()` returns the URL once the server accepts connections; `request_log` lists
    `(method, path, query, user_agent, status)` for every request served so far.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, bookmark_interval: float = 60.0
    ) -> None:
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.url = ""
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._rest: RestServer | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._log_lock:
            return list(self._log)

    def _record(self, method: str, path: str, query: str, agent: str, status: int) -> None:
        with self._log_lock:
            self._log.append((method, path, query, agent, status))

    def start(self) -> str:
        if self._thread is not None:
            return self.url
        self._thread = threading.Thread(target=self._run, name="kubeemu", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._failure is not None:
            raise RuntimeError(f"emulator failed to start: {self._failure}") from self._failure
        if not self._ready.is_set():
            raise RuntimeError("emulator did not start within 30 seconds")
        return self.url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:
            self._failure = error
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._shutdown())
        loop.close()

    async def _serve(self) -> None:
        api = Api()
        self._rest = RestServer(api, self._record, self.bookmark_interval)
        self._runner = web.AppRunner(
            self._rest.application(), access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets: Any = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"

    async def _shutdown(self) -> None:
        if self._rest is not None:
            self._rest.stop_watches()
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
