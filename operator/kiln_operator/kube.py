"""The one door to the Kubernetes API: an async REST client and its typed errors.

Every read and write of the reconcilers goes through :class:`Kube`, so there is one place
that knows the wire format (paths, patch content types, the field manager), one place that
decides which failures are temporary (:func:`is_transient`), and one counter of API calls by
verb (``kiln_operator_api_requests_total``). Credentials come from the ``kubernetes``
package's loaders: the in-cluster service account inside a pod, else ``$KUBECONFIG`` or
``~/.kube/config``; requests are sent with aiohttp on the operator's event loop.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import aiohttp
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from kiln_operator.metrics import API_REQUESTS

Obj = dict[str, Any]

#: The field manager of every write the operator makes; server-side apply forces it.
FIELD_MANAGER: Final = "kiln-operator"

APPLY_PATCH: Final = "application/apply-patch+yaml"
MERGE_PATCH: Final = "application/merge-patch+json"

#: HTTP codes after which the same request may well succeed later.
_TRANSIENT_CODES: Final = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: a namespace is required")
            return f"{prefix}/namespaces/{quote(namespace)}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, name: str, namespace: str | None, subresource: str | None = None) -> str:
        path = f"{self.collection_path(namespace)}/{quote(name)}"
        return f"{path}/{subresource}" if subresource else path


JOBS: Final = Resource("batch", "v1", "jobs", "Job")
PODS: Final = Resource("", "v1", "pods", "Pod")
SERVICES: Final = Resource("", "v1", "services", "Service")
EVENTS: Final = Resource("", "v1", "events", "Event")
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments", "Deployment")
HPAS: Final = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
PDBS: Final = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
HTTP_ROUTES: Final = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
TRAINING_JOBS: Final = Resource("kiln.dev", "v1alpha1", "trainingjobs", "TrainingJob")
MODEL_VERSIONS: Final = Resource("kiln.dev", "v1alpha1", "modelversions", "ModelVersion")
INFERENCE_SERVICES: Final = Resource(
    "kiln.dev", "v1alpha1", "inferenceservices", "InferenceService"
)


class ApiError(Exception):
    """A request the API server refused, or that never got an answer (``status`` 0)."""

    def __init__(self, verb: str, path: str, status: int, body: Mapping[str, Any]) -> None:
        self.verb = verb
        self.path = path
        self.status = status
        self.reason = str(body.get("reason", ""))
        self.message = str(body.get("message", ""))
        self.body = dict(body)
        super().__init__(f"{verb} {path}: {status} {self.reason}: {self.message}".rstrip(": "))


class NotFound(ApiError):
    """404: the object (or its namespace, or its kind) does not exist."""


class AlreadyExists(ApiError):
    """409 AlreadyExists: a create found the name taken."""


class Conflict(ApiError):
    """409 Conflict: a stale resourceVersion, or an apply conflict with another manager."""


class Invalid(ApiError):
    """422: the object breaks the schema or a validation rule; retrying cannot help."""


class Forbidden(ApiError):
    """403: RBAC does not allow the request."""


class Unavailable(ApiError):
    """No usable answer: a timeout, a refused connection, a 5xx or 429."""


class Expired(ApiError):
    """410 Gone/Expired: a watch's resourceVersion is too old; list again."""


@dataclass(frozen=True)
class Listing:
    """A list answer: its items and the resourceVersion to watch from."""

    items: list[Obj]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    """One line of a watch stream: ADDED, MODIFIED, DELETED or BOOKMARK, and its object."""

    type: str
    object: Obj


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same request later may succeed. The one place this is decided.

    Conflicts count as transient: the next reconcile re-reads and decides again. Invalid,
    Forbidden and other 4xx answers are permanent until a human changes something.
    """
    if isinstance(error, Unavailable | Conflict):
        return True
    if isinstance(error, ApiError):
        return error.status in _TRANSIENT_CODES
    return isinstance(error, aiohttp.ClientError | TimeoutError | ConnectionError)


def _error_for(verb: str, path: str, status: int, body: Mapping[str, Any]) -> ApiError:
    reason = str(body.get("reason", ""))
    if status == 404:
        return NotFound(verb, path, status, body)
    if status == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(verb, path, status, body)
        return Conflict(verb, path, status, body)
    if status == 422:
        return Invalid(verb, path, status, body)
    if status == 403:
        return Forbidden(verb, path, status, body)
    if status == 410:
        return Expired(verb, path, status, body)
    if status in _TRANSIENT_CODES:
        return Unavailable(verb, path, status, body)
    return ApiError(verb, path, status, body)


@dataclass(frozen=True)
class Credentials:
    """How to reach and authenticate to one API server."""

    server: str
    ssl_context: ssl.SSLContext | bool
    configuration: Any  # kubernetes.client.Configuration: it refreshes rotating tokens

    def authorization(self) -> str | None:
        # kubernetes-client keeps a kubeconfig's or the service account's token under
        # "BearerToken" (older releases: "authorization"); asking for it each time runs the
        # refresh hook of the in-cluster loader, which re-reads the rotated token file.
        for key in ("BearerToken", "authorization"):
            token = self.configuration.get_api_key_with_prefix(key)
            if token:
                return str(token)
        if self.configuration.username and self.configuration.password:
            return str(self.configuration.get_basic_auth_token())
        return None


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """The in-cluster service account inside a pod, else the current kubeconfig context
    (of ``kubeconfig`` when given, else ``$KUBECONFIG`` or ``~/.kube/config``)."""
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is not None:
            raise k8s_config.ConfigException("an explicit kubeconfig was given")
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    server = str(configuration.host).rstrip("/")
    context: ssl.SSLContext | bool = False
    if server.startswith("https://"):
        if configuration.verify_ssl:
            context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return Credentials(server=server, ssl_context=context, configuration=configuration)


class Kube:
    """Async access to one API server; create with :meth:`connect`, end with :meth:`close`."""

    def __init__(
        self,
        credentials: Credentials,
        session: aiohttp.ClientSession,
        timeout: float,
        watch_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._credentials = credentials
        self._session = session
        # Watches hold their connection for minutes: they get a pool of their own, so
        # that however many are open, requests never wait for a free connection.
        self._watch_session = watch_session or session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @classmethod
    async def connect(
        cls, credentials: Credentials | None = None, request_seconds: float = 30.0
    ) -> Kube:
        creds = credentials or load_credentials()
        connector = aiohttp.TCPConnector(ssl=creds.ssl_context, limit=32)
        watch_connector = aiohttp.TCPConnector(ssl=creds.ssl_context, limit=0)
        return cls(
            creds,
            aiohttp.ClientSession(connector=connector),
            request_seconds,
            aiohttp.ClientSession(connector=watch_connector),
        )

    async def close(self) -> None:
        await self._session.close()
        if self._watch_session is not self._session:
            await self._watch_session.close()

    # -- verbs ---------------------------------------------------------------------------

    async def get(self, resource: Resource, name: str, namespace: str | None) -> Obj:
        return await self._call("get", resource, resource.object_path(name, namespace))

    async def get_or_none(self, resource: Resource, name: str, namespace: str | None) -> Obj | None:
        try:
            return await self.get(resource, name, namespace)
        except NotFound:
            return None

    async def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[Obj]:
        return (await self.listing(resource, namespace, label_selector)).items

    async def listing(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> Listing:
        """List (in ``namespace``, or every namespace when None) with the list's version."""
        query = {"labelSelector": label_selector} if label_selector else None
        path = _collection_or_all(resource, namespace)
        answer = await self._call("list", resource, path, query)
        items: list[Obj] = answer.get("items") or []
        # List items carry no apiVersion/kind; builders and decisions expect them.
        for item in items:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        return Listing(items, version)

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[WatchEvent]:
        """Stream changes after ``resource_version``, filtered by ``label_selector`` at the
        API server, until the server ends the watch (``timeout_seconds``).

        Raises :class:`Expired` when the version is too old (list again), and
        :class:`Unavailable` when the connection fails.
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            query["labelSelector"] = label_selector
        path = _collection_or_all(resource, namespace)
        url = self._credentials.server + path + f"?{urlencode(query)}"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout.total, sock_read=timeout_seconds + 30
        )
        try:
            async with self._watch_session.get(
                url, headers=self._headers(), timeout=timeout
            ) as response:
                API_REQUESTS.labels("watch", resource.plural, str(response.status)).inc()
                if response.status != 200:
                    raise _error_for("watch", path, response.status, _decode(await response.read()))
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = str(event.get("type", "")), event.get("object") or {}
                    if kind == "ERROR":
                        code = int(obj.get("code") or 500)
                        raise _error_for("watch", path, code, obj)
                    obj.setdefault("apiVersion", resource.api_version)
                    obj.setdefault("kind", resource.kind)
                    yield WatchEvent(kind, obj)
        except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as error:
            API_REQUESTS.labels("watch", resource.plural, "0").inc()
            message = {"message": f"{type(error).__name__}: {error}"}
            raise Unavailable("watch", path, 0, message) from error

    async def create(self, resource: Resource, obj: Obj, namespace: str | None) -> Obj:
        path = resource.collection_path(namespace)
        return await self._call(
            "create", resource, path, {"fieldManager": FIELD_MANAGER}, body=obj, method="POST"
        )

    async def apply(self, resource: Resource, obj: Obj, namespace: str | None) -> Obj:
        """Server-side apply of ``obj`` as the operator's field manager, forcing ownership."""
        path = resource.object_path(obj["metadata"]["name"], namespace)
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        return await self._call(
            "apply", resource, path, query, body=obj, method="PATCH", content_type=APPLY_PATCH
        )

    async def merge_patch(
        self,
        resource: Resource,
        name: str,
        namespace: str | None,
        patch: Obj,
        subresource: str | None = None,
    ) -> Obj:
        path = resource.object_path(name, namespace, subresource)
        return await self._call(
            "patch",
            resource,
            path,
            {"fieldManager": FIELD_MANAGER},
            body=patch,
            method="PATCH",
            content_type=MERGE_PATCH,
        )

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> None:
        """Delete; with ``uid`` only that incarnation (a precondition), never a namesake."""
        options: Obj = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation,
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        path = resource.object_path(name, namespace)
        await self._call("delete", resource, path, body=options, method="DELETE")

    # -- transport -----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kiln-operator"}
        authorization = self._credentials.authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    async def _call(
        self,
        verb: str,
        resource: Resource,
        path: str,
        query: Mapping[str, str] | None = None,
        *,
        body: Obj | None = None,
        method: str = "GET",
        content_type: str = "application/json",
    ) -> Obj:
        url = self._credentials.server + path + (f"?{urlencode(query)}" if query else "")
        headers = self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=self._timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
            API_REQUESTS.labels(verb, resource.plural, "0").inc()
            raise Unavailable(verb, path, 0, {"message": f"{type(error).__name__}: {error}"}) from (
                error
            )
        API_REQUESTS.labels(verb, resource.plural, str(status)).inc()
        decoded = _decode(raw)
        if not 200 <= status < 300:
            raise _error_for(verb, path, status, decoded)
        return decoded


def _collection_or_all(resource: Resource, namespace: str | None) -> str:
    """A namespaced kind's collection in ``namespace``, or across all namespaces (None)."""
    if resource.namespaced and namespace is None:
        prefix = (
            f"/apis/{resource.group}/{resource.version}"
            if resource.group
            else f"/api/{resource.version}"
        )
        return f"{prefix}/{resource.plural}"
    return resource.collection_path(namespace)


def _decode(raw: bytes) -> Obj:
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError:
        return {"message": raw.decode(errors="replace")[:1000]}
    return decoded if isinstance(decoded, dict) else {"value": decoded}
