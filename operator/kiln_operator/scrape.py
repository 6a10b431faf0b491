"""Read model-server pods' ``/metrics`` over HTTP, for canary analysis.

The one place the operator talks to pods rather than to the Kubernetes API: a GET of
``http://<pod IP>:<port>/metrics`` with a short timeout, so that one hung pod cannot stall a
reconcile. A pod that cannot be read is reported by name and left out of the analysis; the
verdict then rests on the pods that answered (none: inconclusive).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import aiohttp

#: Seconds one scrape may take.
SCRAPE_TIMEOUT_SECONDS: Final = 3.0


@dataclass(frozen=True)
class Scraped:
    """The exposition text of each pod that answered, and why the others did not."""

    texts: Mapping[str, str] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)


class Scraper:
    """An HTTP client for pods' metrics endpoints, created inside the running loop."""

    def __init__(self, timeout: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def scrape(self, endpoints: Mapping[str, str]) -> Scraped:
        """GET each of ``endpoints`` (pod name -> URL) at once."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        session = self._session
        names = sorted(endpoints)
        answers = await asyncio.gather(
            *(self._one(session, endpoints[name]) for name in names), return_exceptions=True
        )
        texts: dict[str, str] = {}
        failures: dict[str, str] = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, str):
                texts[name] = answer
            elif isinstance(answer, BaseException):
                failures[name] = f"{type(answer).__name__}: {answer}".rstrip(": ")
        return Scraped(texts, failures)

    async def _one(self, session: aiohttp.ClientSession, url: str) -> str:
        async with session.get(url) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message="not 200"
                )
            return await response.text()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
