"""Fixtures for the emulator's own tests: one emulator per module and a tiny HTTP client."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import yaml

from tests.kubeemu import Emulator
from tests.kubeemu.api import Api
from tests.kubeemu.options import WriteOptions
from tests.kubeemu.resources import ResourceType

REFERENCE = Path(__file__).resolve().parents[1] / "cluster" / "reference"


class Http:
    """Just enough HTTP to talk to the emulator the way Kubernetes clients do."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        if query:
            path = f"{path}?{urlencode(query)}"
        payload = None
        if body is not None:
            payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        connection = HTTPConnection(self.host, self.port, timeout=30)
        try:
            headers = {
                "Content-Type": content_type,
                "Accept": accept,
                "User-Agent": "kubeemu-test/1.0",
            }
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        return response.status, json.loads(raw) if raw else None

    def watch(self, path: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """Every event of a watch that ends by itself (give it `timeoutSeconds`)."""
        connection = HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request("GET", f"{path}?{urlencode({'watch': '1', **query})}")
            response = connection.getresponse()
            assert response.status == 200
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]
        finally:
            connection.close()

    def get(self, path: str, **query: str) -> tuple[int, Any]:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any, **query: str) -> tuple[int, Any]:
        return self.request("POST", path, body, query=query or None)

    def put(self, path: str, body: Any, **query: str) -> tuple[int, Any]:
        return self.request("PUT", path, body, query=query or None)

    def patch(self, path: str, body: Any, content_type: str, **query: str) -> tuple[int, Any]:
        return self.request("PATCH", path, body, content_type=content_type, query=query or None)

    def delete(self, path: str, body: Any = None, **query: str) -> tuple[int, Any]:
        return self.request("DELETE", path, body, query=query or None)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator()
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def http(emulator: Emulator) -> Http:
    return Http(emulator.url)


@pytest.fixture
def namespace(http: Http) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    status, _ = http.post("/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201
    return name


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def served(api: Api, group: str, version: str, plural: str) -> ResourceType:
    found = api.registry.find(group, version, plural)
    assert found is not None, f"{plural}.{group}/{version} is not served"
    return found


#: The field manager of objects the in-process tests create.
AS_TEST = WriteOptions(manager="test")


def api_with_namespace(*, widgets: bool = False, options: WriteOptions = AS_TEST) -> Api:
    """An in-process API with namespace ``ns`` (and the recorded Widget CRD, if asked)."""
    api = Api()
    if widgets:
        crds = served(api, "apiextensions.k8s.io", "v1", "customresourcedefinitions")
        api.create(crds, "", load_yaml(REFERENCE / "widget-crd.yaml"), options)
    api.create(served(api, "", "v1", "namespaces"), "", {"metadata": {"name": "ns"}}, options)
    return api
