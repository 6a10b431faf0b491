"""Fixtures of the server tier: models built once per session and servers serving them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import models
from tests.server.server_process import ServerProcess


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
    server = ServerProcess(tabular_dir, "tabular", "--model-version", "3", "--threads", "1")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mixed_server(mixed_dir: str) -> Iterator[ServerProcess]:
    server = ServerProcess(mixed_dir, "mixed", "--threads", "1")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
