"""A small synchronous Kubernetes client for tests, working on any backend.

Tests speak to the API the way users and the operator do: plain REST on
``apiVersion``/``kind``/``name``. The client loads the backend's kubeconfig through the
``kubernetes`` package (so TLS, client certificates and tokens work on a real API server)
but sends raw requests through its connection pool, so every patch content type, every
query parameter and every error body stays visible. It never retries and never hides an
error: anything but a 2xx becomes an :class:`ApiError` carrying the server's Status.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

Obj = dict[str, Any]

#: Content types of the four patch flavours the API server accepts.
PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

#: The field manager used for server-side apply when a test does not name one.
DEFAULT_FIELD_MANAGER = "kiln-tests"


class ApiError(Exception):
    """A non-2xx answer: ``status`` (HTTP code), ``reason`` and ``body`` (the Status)."""

    def __init__(self, method: str, path: str, status: int, body: Obj) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.reason = str(body.get("reason", ""))
        self.message = str(body.get("message", ""))
        super().__init__(f"{method} {path} -> {status} {self.reason}: {self.message}")


class WaitTimeout(AssertionError):
    """``wait_for`` gave up; the message shows what was awaited and the last object seen."""


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API, as discovery describes it."""

    group_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        if "/" in self.group_version:
            return f"/apis/{self.group_version}"
        return f"/api/{self.group_version}"

    def collection_path(self, namespace: str | None) -> str:
        if self.namespaced and namespace:
            return f"{self.prefix}/namespaces/{quote(namespace)}/{self.plural}"
        return f"{self.prefix}/{self.plural}"

    def object_path(self, name: str, namespace: str | None, subresource: str | None = None) -> str:
        if self.namespaced and not namespace:
            raise ValueError(f"{self.kind} is namespaced: a namespace is required for {name!r}")
        path = f"{self.collection_path(namespace)}/{quote(name)}"
        return f"{path}/{subresource}" if subresource else path


def load_manifests(path_or_dicts: str | Path | Iterable[Obj]) -> list[Obj]:
    """Every non-empty document of a YAML file (or the given dicts), in order."""
    if isinstance(path_or_dicts, str | Path):
        text = Path(path_or_dicts).read_text()
        return [doc for doc in yaml.safe_load_all(text) if doc]
    return [dict(doc) for doc in path_or_dicts]


class KubeClient:
    """Synchronous REST access to one API server, configured from a kubeconfig file."""

    def __init__(self, kubeconfig: Path, *, request_timeout: float = 30.0) -> None:
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        # Enough pooled connections for the scale test's concurrent watches.
        configuration.connection_pool_maxsize = 128
        self._configuration = configuration
        self._api_client = k8s_client.ApiClient(configuration)
        self._pool: urllib3.PoolManager = self._api_client.rest_client.pool_manager
        self._host = configuration.host.rstrip("/")
        self._request_timeout = request_timeout
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovered: set[str] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._api_client.close()

    # -- transport -------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kiln-tests"}
        token = self._configuration.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        headers.update(extra or {})
        return headers

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        return f"{self._host}{path}" + (f"?{urlencode(params)}" if params else "")

    def raw(
        self,
        method: str,
        path: str,
        body: Obj | builtins.list[Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> tuple[int, Obj]:
        """Send one request and return ``(status, decoded JSON body)`` without judging it.

        A body that is not JSON comes back as ``{"text": ...}``.
        """
        payload: bytes | None
        request_headers = self._headers(headers)
        if body is None:
            payload = None
        elif isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body).encode()
            request_headers.setdefault("Content-Type", "application/json")
        response = self._pool.request(
            method,
            self._url(path, query),
            body=payload,
            headers=request_headers,
            timeout=urllib3.Timeout(total=self._request_timeout),
            retries=False,
        )
        data = response.data
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"text": data.decode(errors="replace")}
        if not isinstance(decoded, dict):
            decoded = {"value": decoded}
        return response.status, decoded

    def request(
        self,
        method: str,
        path: str,
        body: Obj | builtins.list[Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> Obj:
        """Like :meth:`raw`, but a non-2xx answer raises :class:`ApiError`."""
        status, decoded = self.raw(method, path, body, headers, query)
        if not 200 <= status < 300:
            raise ApiError(method, path, status, decoded)
        return decoded

    # -- discovery -------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        """Map ``apiVersion`` + ``kind`` to its plural and scope, from discovery.

        A miss re-reads the group version once, so kinds from CRDs installed after the
        first lookup are found.
        """
        key = (api_version, kind)
        with self._lock:
            if key not in self._resources:
                self._discover(api_version)
            if key not in self._resources:
                raise LookupError(f"the server does not serve kind {kind} in {api_version}")
            return self._resources[key]

    def _discover(self, api_version: str) -> None:
        prefix = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        status, body = self.raw("GET", prefix)
        if status == 404:
            return
        if status != 200:
            raise ApiError("GET", prefix, status, body)
        for entry in body.get("resources", []):
            if "/" in entry["name"]:  # subresources such as pods/status
                continue
            resource = Resource(api_version, entry["kind"], entry["name"], entry["namespaced"])
            self._resources[(api_version, entry["kind"])] = resource

    def forget_discovery(self) -> None:
        """Drop cached mappings (after a CRD is deleted or changes its names)."""
        with self._lock:
            self._resources.clear()

    # -- verbs -----------------------------------------------------------------------

    def create(self, obj: Obj, namespace: str | None = None, **query: Any) -> Obj:
        resource = self.resource(obj["apiVersion"], obj["kind"])
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return self.request("POST", resource.collection_path(ns), obj, query=query)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        resource = self.resource(api_version, kind)
        return self.request("GET", resource.object_path(name, namespace))

    def get_or_none(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        try:
            return self.get(api_version, kind, name, namespace)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        **query: Any,
    ) -> Obj:
        """The List object (``items`` plus ``metadata.resourceVersion`` for watches)."""
        resource = self.resource(api_version, kind)
        params = {"labelSelector": label_selector, "fieldSelector": field_selector, **query}
        return self.request("GET", resource.collection_path(namespace), query=params)

    def replace(self, obj: Obj, subresource: str | None = None) -> Obj:
        """PUT the whole object; a stale ``metadata.resourceVersion`` gets 409 Conflict."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        path = resource.object_path(meta["name"], meta.get("namespace"), subresource)
        return self.request("PUT", path, obj)

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        body: Obj | builtins.list[Any],
        patch_type: str = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> Obj:
        """Patch with ``merge``, ``json``, ``strategic`` or ``apply`` (server-side apply)."""
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(
                f"unknown patch type {patch_type!r}; use {sorted(PATCH_CONTENT_TYPES)}"
            )
        if patch_type == "apply" and field_manager is None:
            field_manager = DEFAULT_FIELD_MANAGER
        resource = self.resource(api_version, kind)
        path = resource.object_path(name, namespace, subresource)
        query = {"fieldManager": field_manager, "force": _bool_param(force)}
        headers = {"Content-Type": PATCH_CONTENT_TYPES[patch_type]}
        return self.request("PATCH", path, body, headers=headers, query=query)

    def apply(
        self, obj: Obj, field_manager: str = DEFAULT_FIELD_MANAGER, force: bool = False
    ) -> Obj:
        """Server-side apply of a whole object (its own name and namespace)."""
        meta = obj["metadata"]
        return self.patch(
            obj["apiVersion"],
            obj["kind"],
            meta["name"],
            meta.get("namespace"),
            obj,
            patch_type="apply",
            field_manager=field_manager,
            force=force,
        )

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> Obj:
        """Delete; returns the server's answer (the object while finalizers hold it)."""
        resource = self.resource(api_version, kind)
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        return self.request("DELETE", resource.object_path(name, namespace), options)

    def apply_manifest(
        self, path_or_dicts: str | Path | Iterable[Obj], namespace: str
    ) -> builtins.list[Obj]:
        """Create or update every document, like ``kubectl apply`` for tests.

        Namespaced documents without a namespace land in ``namespace``; an existing
        object is replaced (its ``resourceVersion`` carried over), keeping its status.
        """
        applied = []
        for doc in load_manifests(path_or_dicts):
            resource = self.resource(doc["apiVersion"], doc["kind"])
            doc.setdefault("metadata", {})
            if resource.namespaced:
                doc["metadata"].setdefault("namespace", namespace)
            else:
                doc["metadata"].pop("namespace", None)
            applied.append(self._create_or_replace(doc))
        return applied

    def _create_or_replace(self, doc: Obj, attempts: int = 10) -> Obj:
        """Create ``doc``, or replace the object at its current resourceVersion; a write in
        between (an operator's status update) is a conflict, retried on a fresh read."""
        meta = doc["metadata"]
        for attempt in range(attempts):
            current = self.get_or_none(
                doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace")
            )
            if current is None:
                return self.create(doc)
            wanted = {**doc, "metadata": {**meta}}
            wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if "status" in current and "status" not in doc:
                wanted["status"] = current["status"]
            try:
                return self.replace(wanted)
            except ApiError as error:
                if error.status != 409 or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # -- waiting and watching ----------------------------------------------------------

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        predicate: Callable[[Obj | None], bool],
        timeout: float = 30.0,
        description: str | None = None,
        interval: float = 0.05,
    ) -> Obj | None:
        """Poll until ``predicate(obj)`` holds (``obj`` is None while it does not exist).

        Returns the object that satisfied the predicate; on timeout raises
        :class:`WaitTimeout` showing the last object seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            current = self.get_or_none(api_version, kind, name, namespace)
            if predicate(current):
                return current
            if time.monotonic() >= deadline:
                what = description or getattr(predicate, "__name__", "the predicate")
                where = f"{kind} {namespace + '/' if namespace else ''}{name}"
                seen = "<absent>" if current is None else yaml.safe_dump(current, sort_keys=False)
                raise WaitTimeout(
                    f"{where}: timed out after {timeout:.1f}s waiting for {what}; "
                    f"last seen:\n{seen}"
                )
            time.sleep(interval)
            interval = min(interval * 1.5, 0.5)

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        allow_bookmarks: bool = False,
        timeout: float = 10.0,
        **query: Any,
    ) -> Iterator[Obj]:
        """Stream watch events (``{"type", "object"}``) for at most ``timeout`` seconds.

        The server is asked to end the stream after ``timeout`` (``timeoutSeconds``); the
        client stops reading at the same deadline, so the iterator always ends.
        """
        resource = self.resource(api_version, kind)
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "allowWatchBookmarks": "true" if allow_bookmarks else None,
            "timeoutSeconds": max(1, int(timeout + 0.999)),
            **query,
        }
        path = resource.collection_path(namespace)
        return self.watch_path(path, params, timeout)

    def watch_path(self, path: str, query: Mapping[str, Any], timeout: float) -> Iterator[Obj]:
        """Watch events of any collection path (see :meth:`watch`).

        The request is sent before this returns, so a watch is established (and a
        refused one has raised :class:`ApiError`) before the caller makes changes.
        """
        deadline = time.monotonic() + timeout
        response = self._pool.request(
            "GET",
            self._url(path, query),
            headers=self._headers(None),
            timeout=urllib3.Timeout(connect=10.0, read=timeout + 5.0),
            preload_content=False,
            retries=False,
        )
        if response.status != 200:
            body = response.read()
            response.release_conn()
            raise ApiError("GET", path, response.status, _decode(body))
        return _watch_events(response, deadline)


def _watch_events(response: urllib3.BaseHTTPResponse, deadline: float) -> Iterator[Obj]:
    """Decode newline-delimited watch events until the stream or the deadline ends."""
    buffered = b""
    try:
        for chunk in response.stream(1024 * 64, decode_content=True):
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
            if time.monotonic() >= deadline:
                return
        if buffered.strip():
            yield json.loads(buffered)
    except urllib3.exceptions.ReadTimeoutError:
        return
    except urllib3.exceptions.ProtocolError:
        # The server closed the stream (its timeoutSeconds) in the middle of a chunk.
        return
    finally:
        response.close()
        response.release_conn()


def _bool_param(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")


def _decode(data: bytes) -> Obj:
    try:
        decoded = json.loads(data)
    except ValueError:
        return {"text": data.decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else {"value": decoded}
