"""Bad input never crashes the emulator: every request ends in an object or an API Status."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kubeemu.api import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Api
from tests.kubeemu.conftest import api_with_namespace, served
from tests.kubeemu.errors import ApiError
from tests.kubeemu.options import WriteOptions

AS_TEST = WriteOptions(manager="fuzz")
KEYS = st.sampled_from(
    [
        "metadata",
        "spec",
        "status",
        "name",
        "labels",
        "finalizers",
        "model",
        "replicas",
        "steps",
        "containers",
        "conditions",
        "type",
        "op",
        "path",
        "value",
        "$patch",
        "ownerReferences",
        "uid",
    ]
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5000)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)


def fresh_api() -> Api:
    api = api_with_namespace(widgets=True, options=AS_TEST)
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    api.create(widgets, "ns", {"metadata": {"name": "w"}, "spec": {"model": "m"}}, AS_TEST)
    deployments = served(api, "apps", "v1", "deployments")
    template = {
        "metadata": {"labels": {"app": "w"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    spec = {"selector": {"matchLabels": {"app": "w"}}, "template": template}
    api.create(deployments, "ns", {"metadata": {"name": "w"}, "spec": spec}, AS_TEST)
    return api


API = fresh_api()


def survives(call: Any) -> None:
    """The call returns, or refuses with a client error (4xx) rather than a crash or a 500."""
    try:
        call()
        code = 200
    except ApiError as error:
        code = error.code
    assert 200 <= code < 500


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON, group=st.sampled_from(["widgets", "deployments"]))
def test_any_create_body_is_stored_or_refused(body: Any, group: str) -> None:
    rt = (
        served(API, "ref.example.dev", "v1alpha1", "widgets")
        if group == "widgets"
        else served(API, "apps", "v1", "deployments")
    )
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        body["metadata"]["generateName"] = "f-"
        body["metadata"].pop("name", None)
    survives(lambda: API.create(rt, "ns", body, AS_TEST))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=JSON,
    kind=st.sampled_from([MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH, APPLY_PATCH]),
    subresource=st.sampled_from(["", "status"]),
    group=st.sampled_from(["widgets", "deployments"]),
)
def test_any_patch_is_applied_or_refused(
    body: Any, kind: str, subresource: str, group: str
) -> None:
    rt = (
        served(API, "ref.example.dev", "v1alpha1", "widgets")
        if group == "widgets"
        else served(API, "apps", "v1", "deployments")
    )
    survives(lambda: API.patch(rt, "ns", "w", kind, body, subresource, AS_TEST))
