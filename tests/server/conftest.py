"""Fixtures of the server tier: models built once per session and servers serving them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.server import models
from tests.server.raw_http import RawClient
from tests.server.server_process import ServerProcess, serving


@pytest.fixture(scope="session")
def tabular_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = str(tmp_path_factory.mktemp("tabular"))
    models.tabular(directory)
    return directory


@pytest.fixture(scope="session")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = str(tmp_path_factory.mktemp("mixed"))
    models.mixed(directory)
    return directory


@pytest.fixture(scope="session")
def tabular_server(tabular_dir: str) -> Iterator[ServerProcess]:
    with serving(tabular_dir, "tabular", "--model-version", "3", "--threads", "1") as server:
        yield server


@pytest.fixture(scope="session")
def mixed_server(mixed_dir: str) -> Iterator[ServerProcess]:
    with serving(mixed_dir, "mixed", "--threads", "1") as server:
        yield server


@pytest.fixture
def connect() -> Iterator[Callable[[int], RawClient]]:
    clients: list[RawClient] = []

    def open_client(port: int) -> RawClient:
        clients.append(RawClient(port))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()
