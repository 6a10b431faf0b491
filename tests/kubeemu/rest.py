"""HTTP in, API verbs out: routing, query parameters, content types and watch streams.

Everything about the wire lives here; what the verbs do lives in `api`. One catch-all route
parses Kubernetes REST paths (`/api/v1/namespaces/{ns}/{plural}/{name}/{subresource}`,
`/apis/{group}/{version}/...`) the way the API server's router does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from tests.kubeemu import discovery, listing, openapi, table
from tests.kubeemu.api import APPLY_PATCH, APPLY_PATCH_CBOR, Api
from tests.kubeemu.errors import ApiError, bad_request, expired
from tests.kubeemu.options import DeleteOptions, WriteOptions
from tests.kubeemu.patch import merge_patch
from tests.kubeemu.resources import ResourceType
from tests.kubeemu.selectors import Predicate, combine, field_selector, label_selector
from tests.kubeemu.store import Obj
from tests.kubeemu.watch import WatchRequest, WatchStreams

log = logging.getLogger("kubeemu")

RequestLog = Callable[[str, str, str, str, int], None]
# Set on watch requests, which log themselves when the stream starts rather than when it ends.
LOGGED = web.RequestKey("kubeemu_logged", bool)
# The write options of a request, kept so its warnings become `Warning` response headers.
WRITE_OPTIONS = web.RequestKey("kubeemu_write_options", WriteOptions)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(value), status=status, content_type="application/json")


def _error(error: ApiError) -> web.Response:
    return _json(error.status(), error.code)


_NOT_FOUND_PATH = ApiError(404, "the server could not find the requested resource", details={})


@dataclass(frozen=True)
class Target:
    """A parsed resource path."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    legacy_watch: bool


class RestServer:
    """The aiohttp application serving one `Api`."""

    def __init__(self, api: Api, record: RequestLog, bookmark_interval: float) -> None:
        self.api = api
        self._record = record
        self.watches = WatchStreams(api, bookmark_interval)

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._log_middleware], client_max_size=16 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    def stop_watches(self) -> None:
        self.watches.stop()

    @web.middleware
    async def _log_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if not request.get(LOGGED):
            self._log(request, response.status)
        return response

    def _log(self, request: web.Request, status: int) -> None:
        self._record(
            request.method,
            request.path,
            request.query_string,
            request.headers.get("User-Agent", ""),
            status,
        )

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            response = await self._dispatch(request)
            options = request.get(WRITE_OPTIONS)
            if options is not None and not response.prepared:
                for warning in options.warnings:
                    response.headers.add("Warning", f"299 - {json.dumps(warning)}")
            return response
        except ApiError as error:
            return _error(error)
        except Exception as error:  # a bug in the emulator must not look like a hang
            log.exception("emulator failed on %s %s", request.method, request.path_qs)
            return _error(ApiError(500, f"emulator internal error: {error!r}"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        method = request.method
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return _json(discovery.VERSION_INFO)
        if path == "/api":
            return _json(discovery.core_versions())
        if path == "/apis":
            return _json(discovery.group_list(self.api.registry))
        if path.startswith("/openapi/"):
            if path == "/openapi/v2" and "json" not in request.headers.get("Accept", "json"):
                return web.Response(body=openapi.V2_PROTOBUF, content_type=openapi.V2_PROTOBUF_TYPE)
            document = openapi.document(self.api.registry, path)
            if document is None:
                raise _NOT_FOUND_PATH
            return _json(document)
        segments = [s for s in path.split("/") if s]
        if segments[0] == "api" and len(segments) == 2 and method == "GET":
            found = discovery.resource_list(self.api.registry, "", segments[1])
            if found is None:
                raise _NOT_FOUND_PATH
            return _json(found)
        if segments[0] == "apis" and len(segments) == 2 and method == "GET":
            group = discovery.group(self.api.registry, segments[1])
            if group is None:
                raise _NOT_FOUND_PATH
            return _json(group)
        if segments[0] == "apis" and len(segments) == 3 and method == "GET":
            found = discovery.resource_list(self.api.registry, segments[1], segments[2])
            if found is None:
                raise _NOT_FOUND_PATH
            return _json(found)
        target = self._target(segments)
        return await self._serve(request, target)

    def _target(self, segments: list[str]) -> Target:
        if segments[0] == "api" and len(segments) >= 3:
            group, version, rest = "", segments[1], segments[2:]
        elif segments[0] == "apis" and len(segments) >= 4:
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise _NOT_FOUND_PATH
        legacy_watch = False
        if rest[0] == "watch":
            legacy_watch, rest = True, rest[1:]
        namespace = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise _NOT_FOUND_PATH
        rt = self.api.registry.find(group, version, rest[0])
        if rt is None:
            raise _NOT_FOUND_PATH
        if namespace is not None and not rt.namespaced:
            raise _NOT_FOUND_PATH
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if rt.namespaced and namespace is None and name is not None:
            raise _NOT_FOUND_PATH
        return Target(rt, namespace, name, subresource, legacy_watch)

    async def _serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        method = request.method
        query = request.query
        rt = target.rt
        namespace = target.namespace or ""
        if target.name is None:
            if method == "GET":
                if target.legacy_watch or query.get("watch") in ("1", "true", "True"):
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST":
                if target.namespace is None and rt.namespaced:
                    raise _NOT_FOUND_PATH
                body = await self._body(request)
                created = self.api.create(rt, namespace, body, self._write_options(request))
                return _json(created, 201)
            if method == "DELETE":
                if target.namespace is None and rt.namespaced:
                    raise _NOT_FOUND_PATH
                return _json(await self._delete_collection(request, target))
            raise _method_not_allowed()
        name = target.name
        sub = target.subresource
        if sub is None:
            if method == "GET":
                obj = self.api.get(rt, namespace, name)
                return self._object_response(request, rt, obj)
            if method == "PUT":
                body = await self._body(request)
                return _json(
                    self.api.update(rt, namespace, name, body, "", self._write_options(request))
                )
            if method == "PATCH":
                return await self._patch(request, rt, namespace, name, "")
            if method == "DELETE":
                options = await self._delete_options(request)
                return _json(self.api.delete(rt, namespace, name, options))
            raise _method_not_allowed()
        if sub == "status" and rt.status_subresource:
            if method == "GET":
                return _json(self.api.get(rt, namespace, name))
            if method == "PUT":
                body = await self._body(request)
                return _json(
                    self.api.update(
                        rt, namespace, name, body, "status", self._write_options(request)
                    )
                )
            if method == "PATCH":
                return await self._patch(request, rt, namespace, name, "status")
            raise _method_not_allowed()
        if sub == "log" and rt.storage_key == ("", "pods") and method == "GET":
            raise _no_kubelet(self.api.get(rt, namespace, name))
        if sub == "scale" and "scale" in rt.extra_subresources:
            return await self._scale(request, rt, namespace, name)
        if sub == "finalize" and rt.storage_key == ("", "namespaces") and method == "PUT":
            body = await self._body(request)
            current = self.api.get(rt, namespace, name)
            spec = body.get("spec") if isinstance(body, dict) else None
            updated = {**current, "spec": spec if isinstance(spec, dict) else {}}
            return _json(self.api.update(rt, "", name, updated, "", self._write_options(request)))
        raise _NOT_FOUND_PATH

    # ---- request parsing ---------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if len(raw) > MAX_REQUEST_BYTES:
            raise ApiError(413, f"Request entity too large: limit is {MAX_REQUEST_BYTES}")
        content_type = request.content_type
        if not raw.strip():
            raise bad_request("the request body is empty")
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as error:
            raise bad_request(
                f"the object provided is unrecognized: couldn't get version/kind; json parse "
                f"error: {error}"
            ) from error

    def _write_options(self, request: web.Request) -> WriteOptions:
        query = request.query
        manager = query.get("fieldManager") or ""
        if not manager and request.content_type not in (APPLY_PATCH, APPLY_PATCH_CBOR):
            manager = request.headers.get("User-Agent", "unknown").split("/", 1)[0]
        field_validation = query.get("fieldValidation", "")
        if field_validation not in ("", "Ignore", "Warn", "Strict"):
            raise bad_request(
                f"fieldValidation parameter unsupported: {field_validation}, valid values are "
                "Ignore, Warn, Strict"
            )
        options = WriteOptions(
            manager=manager,
            dry_run=query.get("dryRun") == "All",
            force=query.get("force") in ("true", "1", "True"),
            field_validation=field_validation,
        )
        request[WRITE_OPTIONS] = options
        return options

    async def _patch(
        self, request: web.Request, rt: ResourceType, namespace: str, name: str, sub: str
    ) -> web.Response:
        body = await self._body(request)
        options = self._write_options(request)
        obj, created = self.api.patch(rt, namespace, name, request.content_type, body, sub, options)
        return _json(obj, 201 if created else 200)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        query = request.query
        body: Any = {}
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as error:
                raise bad_request(f"invalid DeleteOptions: {error}") from error
        if not isinstance(body, dict):
            raise bad_request("invalid DeleteOptions: expected an object")
        propagation = body.get("propagationPolicy") or query.get("propagationPolicy") or ""
        if not propagation and body.get("orphanDependents") is True:
            propagation = "Orphan"
        if not propagation and query.get("orphanDependents") == "true":
            propagation = "Orphan"
        preconditions = body.get("preconditions") or {}
        if not isinstance(preconditions, dict):
            raise bad_request("invalid DeleteOptions: preconditions must be an object")
        dry_run = body.get("dryRun") == ["All"] or query.get("dryRun") == "All"
        grace = body.get("gracePeriodSeconds")
        if grace is None and query.get("gracePeriodSeconds"):
            grace = _integer_parameter(query, "gracePeriodSeconds")
        if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
            raise bad_request("invalid DeleteOptions: gracePeriodSeconds must be an integer")
        return DeleteOptions(
            propagation=str(propagation),
            precondition_uid=str(preconditions.get("uid") or ""),
            precondition_rv=str(preconditions.get("resourceVersion") or ""),
            dry_run=dry_run,
            grace_period=grace,
        )

    def _filter(self, request: web.Request, rt: ResourceType) -> Predicate:
        query = request.query
        predicates = []
        if query.get("labelSelector"):
            predicates.append(label_selector(query["labelSelector"]))
        if query.get("fieldSelector"):
            selectable = listing.FIELD_SELECTABLE.get((rt.group, rt.plural), frozenset())
            supported = listing.ALWAYS_SELECTABLE | selectable
            predicates.append(field_selector(query["fieldSelector"], supported))
        return combine(predicates)

    # ---- list, watch, delete collection ------------------------------------------------

    def _selected(self, request: web.Request, target: Target, at: int | None = None) -> list[Obj]:
        accepts = self._filter(request, target.rt)
        return [o for o in self.api.items(target.rt, target.namespace, at) if accepts(o)]

    def _list(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        query = request.query
        token = listing.decode_continue(query.get("continue", ""))
        snapshot = token[0] if token is not None else self._list_resource_version(query)
        try:
            items = self._selected(request, target, snapshot)
        except ApiError as error:
            if token is not None and error.code == 410:
                raise expired(listing.CONTINUE_EXPIRED) from None
            raise
        if token is not None:
            items = [o for o in items if listing.sort_key(o) > token[1]]
        served_at = snapshot if snapshot is not None else self.api.store.resource_version
        list_meta: dict[str, Any] = {"resourceVersion": str(served_at)}
        limit = _integer_parameter(query, "limit")
        if limit > 0 and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            list_meta["continue"] = listing.encode_continue(served_at, listing.sort_key(items[-1]))
            list_meta["remainingItemCount"] = remaining
        elif rt.is_custom:
            list_meta["continue"] = ""
        if table.wants_table(request.headers.get("Accept", "")):
            return _json(table.render(rt, items, list_meta, query.get("includeObject", "")))
        return _json(
            {
                "apiVersion": rt.api_version,
                "kind": rt.list_kind,
                "metadata": list_meta,
                "items": listing.as_list_items(rt, items),
            }
        )

    def _list_resource_version(self, query: Any) -> int | None:
        """The version an Exact list reads at; None for the current state."""
        rv = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        if match and match not in ("Exact", "NotOlderThan"):
            raise bad_request(
                f'resourceVersionMatch: Unsupported value: "{match}": supported values: '
                '"Exact", "NotOlderThan"'
            )
        if match and not rv:
            raise bad_request(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                "resourceVersion is provided"
            )
        if rv and rv != "0":
            number = _parse_rv(rv)
            self.api.store.check_not_too_new(number)
            if match == "Exact":
                return number
        return None

    def _object_response(self, request: web.Request, rt: ResourceType, obj: Obj) -> web.Response:
        if table.wants_table(request.headers.get("Accept", "")):
            list_meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return _json(table.render(rt, [obj], list_meta, request.query.get("includeObject", "")))
        return _json(obj)

    async def _delete_collection(self, request: web.Request, target: Target) -> Obj:
        options = await self._delete_options(request)
        deleted = []
        for obj in self._selected(request, target):
            meta = obj["metadata"]
            try:
                deleted.append(
                    self.api.delete(target.rt, meta.get("namespace", ""), meta["name"], options)
                )
            except ApiError as error:
                if error.code != 404:
                    raise
        return {
            "apiVersion": target.rt.api_version,
            "kind": target.rt.list_kind,
            "metadata": {"resourceVersion": str(self.api.store.resource_version)},
            "items": listing.as_list_items(target.rt, deleted),
        }

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt = target.rt
        query = request.query
        accepts = _scoped(self._filter(request, rt), target.namespace, target.name)
        if rt.stored_as is not None:
            accepts = _on_served_view(self.api, rt, accepts)
        rv = query.get("resourceVersion", "")
        initial_events = query.get("sendInitialEvents") in ("true", "1", "True")
        timeout = _integer_parameter(query, "timeoutSeconds")
        request[LOGGED] = True
        return await self.watches.serve(
            request,
            WatchRequest(
                rt=rt,
                accepts=accepts,
                since=None if rv in ("", "0") or initial_events else _parse_rv(rv),
                bookmarks=query.get("allowWatchBookmarks") in ("true", "1", "True"),
                initial_events=initial_events,
                as_table=table.wants_table(request.headers.get("Accept", "")),
                include_object=query.get("includeObject", ""),
                deadline=time.monotonic() + timeout if timeout > 0 else None,
                from_storage=rv == "" and not initial_events,
            ),
            lambda: self._log(request, 200),
        )

    # ---- scale subresource -------------------------------------------------------------

    async def _scale(
        self, request: web.Request, rt: ResourceType, namespace: str, name: str
    ) -> web.Response:
        if request.method == "GET":
            return _json(_scale_of(self.api.get(rt, namespace, name)))
        if request.method not in ("PUT", "PATCH"):
            raise _method_not_allowed()
        body = await self._body(request)
        current = self.api.get(rt, namespace, name)
        if request.method == "PATCH":
            body = merge_patch(_scale_of(current), body)
        replicas = (body.get("spec") or {}).get("replicas") if isinstance(body, dict) else None
        if not isinstance(replicas, int):
            raise bad_request("spec.replicas must be an integer")
        spec = dict(current.get("spec") or {})
        spec["replicas"] = replicas
        updated = self.api.update(
            rt, namespace, name, {**current, "spec": spec}, "", self._write_options(request)
        )
        return _json(_scale_of(updated))


def _on_served_view(api: Api, rt: ResourceType, selected: Predicate) -> Predicate:
    """Selectors name the fields of the served view, not those of the stored form."""

    def accepts(obj: Obj) -> bool:
        return selected(api.served(rt, obj))

    return accepts


def _scoped(selected: Predicate, namespace: str | None, name: str | None) -> Predicate:
    """Narrow a watch to one namespace and, for `kubectl wait`-style watches, one name."""

    def accepts(obj: Obj) -> bool:
        meta = obj["metadata"]
        if namespace is not None and meta.get("namespace") != namespace:
            return False
        if name is not None and meta["name"] != name:
            return False
        return selected(obj)

    return accepts


def _scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    status = obj.get("status") or {}
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {
            "replicas": status.get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        },
    }


def _no_kubelet(pod: Obj) -> ApiError:
    """Logs come from a kubelet; the emulator has none, so it answers as a server whose node
    cannot be reached."""
    name = pod["metadata"]["name"]
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        return bad_request(f"pod {name} does not have a host assigned")
    return ApiError(
        500, f"no kubelet serves node {node} in the API emulator, so pod {name} has no logs"
    )


def _method_not_allowed() -> ApiError:
    return ApiError(405, "the server does not allow this method on the requested resource")


# The API server's limit on a request body.
MAX_REQUEST_BYTES = 3 * 1024 * 1024


def _integer_parameter(query: Any, name: str) -> int:
    raw = query.get(name) or "0"
    try:
        return int(raw)
    except ValueError:
        raise bad_request(
            f'{name}: Invalid value: "{raw}": strconv.ParseInt: parsing "{raw}": invalid syntax'
        ) from None


def _parse_rv(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        raise ApiError(
            400, f'resourceVersion: Invalid value: "{rv}": must be a non-negative integer'
        ) from None
