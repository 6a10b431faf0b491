"""The operator's one door to the API, against a real HTTP server on loopback: the wire
format of each verb, typed errors, the transient-or-permanent verdict, and the call counter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client as k8s_client
from prometheus_client import REGISTRY

from kiln_operator import kube

Seen = list[dict[str, Any]]


@pytest.fixture
async def api() -> AsyncIterator[tuple[kube.Kube, Seen, dict[str, tuple[int, Any]]]]:
    """A Kube client and the loopback server it talks to. ``answers`` maps a path to the
    status and body to return (default: 200 with an echo of the request)."""
    seen: Seen = []
    answers: dict[str, tuple[int, Any]] = {}

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "content_type": request.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        )
        status, answer = answers.get(request.path, (200, {"kind": "Echo", "items": []}))
        return web.json_response(answer, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    configuration = k8s_client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    credentials = kube.Credentials(configuration.host, False, configuration)
    client = await kube.Kube.connect(credentials)
    try:
        yield client, seen, answers
    finally:
        await client.close()
        await runner.cleanup()


JOB_PATH = "/apis/batch/v1/namespaces/ml/jobs/run-1"


async def test_server_side_apply_uses_the_apply_content_type_and_forces_one_manager(
    api: tuple[kube.Kube, Seen, dict[str, tuple[int, Any]]],
) -> None:
    client, seen, _ = api
    await client.apply(kube.JOBS, {"metadata": {"name": "run-1"}, "spec": {}}, "ml")
    (request,) = seen
    assert (request["method"], request["path"]) == ("PATCH", JOB_PATH)
    assert request["content_type"] == "application/apply-patch+yaml"
    assert request["query"] == {"fieldManager": "kiln-operator", "force": "true"}


async def test_status_is_merge_patched_on_the_subresource(
    api: tuple[kube.Kube, Seen, dict[str, tuple[int, Any]]],
) -> None:
    client, seen, _ = api
    await client.merge_patch(
        kube.TRAINING_JOBS, "iris", "ml", {"status": {"phase": "Running"}}, "status"
    )
    (request,) = seen
    assert request["path"] == "/apis/kiln.dev/v1alpha1/namespaces/ml/trainingjobs/iris/status"
    assert request["content_type"] == "application/merge-patch+json"


async def test_delete_sends_propagation_and_the_uid_precondition(
    api: tuple[kube.Kube, Seen, dict[str, tuple[int, Any]]],
) -> None:
    client, seen, _ = api
    await client.delete(kube.JOBS, "run-1", "ml", uid="u-1")
    assert seen[0]["body"]["propagationPolicy"] == "Background"
    assert seen[0]["body"]["preconditions"] == {"uid": "u-1"}


async def test_list_items_get_their_kind_and_the_selector_is_sent(
    api: tuple[kube.Kube, Seen, dict[str, tuple[int, Any]]],
) -> None:
    client, seen, answers = api
    answers["/api/v1/namespaces/ml/pods"] = (200, {"items": [{"metadata": {"name": "p"}}]})
    (pod,) = await client.list(kube.PODS, "ml", "kiln.dev/run=r1")
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert seen[0]["query"] == {"labelSelector": "kiln.dev/run=r1"}


@pytest.mark.parametrize(
    ("status", "reason", "error_type", "transient"),
    [
        pytest.param(404, "NotFound", kube.NotFound, False, id="not-found"),
        pytest.param(409, "AlreadyExists", kube.AlreadyExists, False, id="already-exists"),
        pytest.param(409, "Conflict", kube.Conflict, True, id="conflict"),
        pytest.param(422, "Invalid", kube.Invalid, False, id="invalid"),
        pytest.param(403, "Forbidden", kube.Forbidden, False, id="forbidden"),
        pytest.param(429, "TooManyRequests", kube.Unavailable, True, id="throttled"),
        pytest.param(503, "ServiceUnavailable", kube.Unavailable, True, id="unavailable"),
        pytest.param(400, "BadRequest", kube.ApiError, False, id="bad-request"),
    ],
)
async def test_answers_become_typed_errors_judged_in_one_place(
    api: tuple[kube.Kube, Seen, dict[str, tuple[int, Any]]],
    status: int,
    reason: str,
    error_type: type[kube.ApiError],
    transient: bool,
) -> None:
    client, _, answers = api
    answers[JOB_PATH] = (status, {"kind": "Status", "reason": reason, "message": "told you"})
    with pytest.raises(error_type) as caught:
        await client.get(kube.JOBS, "run-1", "ml")
    assert type(caught.value) is error_type
    assert (caught.value.status, caught.value.reason, caught.value.message) == (
        status,
        reason,
        "told you",
    )
    assert kube.is_transient(caught.value) is transient


async def test_a_refused_connection_is_transient() -> None:
    configuration = k8s_client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # the discard port: nothing listens
    client = await kube.Kube.connect(kube.Credentials(configuration.host, False, configuration))
    try:
        with pytest.raises(kube.Unavailable) as caught:
            await client.get(kube.JOBS, "run-1", "ml")
    finally:
        await client.close()
    assert kube.is_transient(caught.value)


async def test_every_call_is_counted_by_verb_and_code(
    api: tuple[kube.Kube, Seen, dict[str, tuple[int, Any]]],
) -> None:
    client, _, answers = api
    labels = {"verb": "create", "resource": "jobs", "code": "201"}

    def created() -> float:
        return REGISTRY.get_sample_value("kiln_operator_api_requests_total", labels) or 0.0

    before = created()
    answers["/apis/batch/v1/namespaces/ml/jobs"] = (201, {"metadata": {"name": "run-1"}})
    await client.create(kube.JOBS, {"metadata": {"name": "run-1"}}, "ml")
    assert created() == before + 1
