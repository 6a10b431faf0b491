"""Finalizers, ``deletionTimestamp`` and owner-reference garbage collection.

An object with finalizers is only marked for deletion; it goes when the last finalizer is
removed. Dependents follow their owner according to ``propagationPolicy``: background
(owner first, then dependents), foreground (owner waits, with the ``foregroundDeletion``
finalizer, until its blocking dependents are gone) and orphan (dependents stay, without the
owner reference). Garbage collection is kube-controller-manager's job, which envtest does
not run: those tests are skipped there and only there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.conftest import WIDGET, WIDGET_API, config_map, widget
from tests.support.backends import Cluster
from tests.support.kube import ApiError, KubeClient, Obj

pytestmark = pytest.mark.usefixtures("widget_crd")

FINALIZER = "kiln.dev/test-hold"


@pytest.fixture
def release_held(kube: KubeClient, namespace: str) -> Iterator[None]:
    """Afterwards, drop the test's finalizers from ``held``: on a cluster that outlives the
    session, a widget left held would keep its namespace and the Widget CRD from ever
    finishing their deletion."""
    yield
    try:
        kube.patch(WIDGET_API, WIDGET, "held", namespace, {"metadata": {"finalizers": None}})
    except ApiError as error:
        if error.status != 404:
            raise


@pytest.mark.usefixtures("release_held")
def test_delete_of_an_object_with_a_finalizer_only_marks_it(
    kube: KubeClient, namespace: str
) -> None:
    manifest = widget("held")
    manifest["metadata"]["finalizers"] = [FINALIZER]
    kube.create(manifest, namespace)
    answer = kube.delete(WIDGET_API, WIDGET, "held", namespace)
    assert answer["metadata"]["deletionTimestamp"]
    current = kube.get(WIDGET_API, WIDGET, "held", namespace)
    assert current["metadata"]["deletionTimestamp"] == answer["metadata"]["deletionTimestamp"]
    assert current["metadata"]["finalizers"] == [FINALIZER]
    assert current["metadata"]["deletionGracePeriodSeconds"] == 0


@pytest.mark.usefixtures("release_held")
def test_removing_the_last_finalizer_completes_the_deletion(
    kube: KubeClient, namespace: str
) -> None:
    manifest = widget("held")
    manifest["metadata"]["finalizers"] = [FINALIZER, "kiln.dev/second"]
    kube.create(manifest, namespace)
    kube.delete(WIDGET_API, WIDGET, "held", namespace)
    kube.patch(
        WIDGET_API, WIDGET, "held", namespace, {"metadata": {"finalizers": ["kiln.dev/second"]}}
    )
    assert kube.get_or_none(WIDGET_API, WIDGET, "held", namespace) is not None
    kube.patch(WIDGET_API, WIDGET, "held", namespace, {"metadata": {"finalizers": None}})
    kube.wait_for(
        WIDGET_API,
        WIDGET,
        "held",
        namespace,
        lambda o: o is None,
        timeout=10,
        description="deletion",
    )


def test_watchers_see_the_marking_then_the_deletion(kube: KubeClient, namespace: str) -> None:
    manifest = widget("held")
    manifest["metadata"]["finalizers"] = [FINALIZER]
    created = kube.create(manifest, namespace)
    kube.delete(WIDGET_API, WIDGET, "held", namespace)
    kube.patch(WIDGET_API, WIDGET, "held", namespace, {"metadata": {"finalizers": []}})
    events = kube.watch(
        WIDGET_API,
        WIDGET,
        namespace,
        resource_version=created["metadata"]["resourceVersion"],
        timeout=5,
    )
    seen = []
    for event in events:
        seen.append(event)
        if event["type"] == "DELETED":
            break
    # Removing the last finalizer deletes at once: no MODIFIED with empty finalizers.
    assert [e["type"] for e in seen] == ["MODIFIED", "DELETED"]
    assert seen[0]["object"]["metadata"]["deletionTimestamp"]


@pytest.mark.usefixtures("release_held")
def test_no_new_finalizer_can_be_added_while_deleting(kube: KubeClient, namespace: str) -> None:
    manifest = widget("held")
    manifest["metadata"]["finalizers"] = [FINALIZER]
    kube.create(manifest, namespace)
    kube.delete(WIDGET_API, WIDGET, "held", namespace)
    with pytest.raises(ApiError) as caught:
        kube.patch(
            WIDGET_API,
            WIDGET,
            "held",
            namespace,
            {"metadata": {"finalizers": [FINALIZER, "kiln.dev/late"]}},
        )
    assert caught.value.status == 422
    assert "no new finalizers can be added if the object is being deleted" in caught.value.message


# -- garbage collection --------------------------------------------------------------------


#: The real garbage collector learns of a CRD that was just created (the Widget kind here)
#: from discovery, which it re-reads every 30 s: until then its dependents wait.
GC_SECONDS = 90


@pytest.fixture
def garbage_collector(cluster: Cluster) -> None:
    if not cluster.runs_controllers:
        pytest.skip(
            "envtest runs no kube-controller-manager, so nothing garbage-collects dependents "
            "(a real difference, not a gap)"
        )


def owned_by(owner: Obj, name: str, block: bool = True) -> Obj:
    dependent = config_map(name)
    dependent["metadata"]["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": block,
        }
    ]
    return dependent


def gone(obj: Obj | None) -> bool:
    return obj is None


@pytest.mark.usefixtures("garbage_collector")
def test_background_deletion_removes_dependents_after_the_owner(
    kube: KubeClient, namespace: str
) -> None:
    owner = kube.create(widget("owner"), namespace)
    for name in ("child-a", "child-b"):
        kube.create(owned_by(owner, name), namespace)
    kube.delete(WIDGET_API, WIDGET, "owner", namespace, propagation_policy="Background")
    assert kube.get_or_none(WIDGET_API, WIDGET, "owner", namespace) is None
    for name in ("child-a", "child-b"):
        kube.wait_for(
            "v1", "ConfigMap", name, namespace, gone, timeout=GC_SECONDS, description="GC"
        )


@pytest.mark.usefixtures("garbage_collector")
def test_default_propagation_collects_dependents(kube: KubeClient, namespace: str) -> None:
    owner = kube.create(widget("owner"), namespace)
    kube.create(owned_by(owner, "child"), namespace)
    kube.delete(WIDGET_API, WIDGET, "owner", namespace)
    kube.wait_for("v1", "ConfigMap", "child", namespace, gone, timeout=GC_SECONDS, description="GC")


@pytest.mark.usefixtures("garbage_collector")
def test_foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone(
    kube: KubeClient, namespace: str
) -> None:
    owner = kube.create(widget("owner"), namespace)
    held = owned_by(owner, "child")
    held["metadata"]["finalizers"] = [FINALIZER]
    kube.create(held, namespace)
    kube.delete(WIDGET_API, WIDGET, "owner", namespace, propagation_policy="Foreground")
    marked = kube.wait_for(
        "v1",
        "ConfigMap",
        "child",
        namespace,
        lambda o: o is not None and "deletionTimestamp" in o["metadata"],
        timeout=GC_SECONDS,
        description="the dependent being deleted",
    )
    assert marked is not None
    waiting = kube.get(WIDGET_API, WIDGET, "owner", namespace)
    assert waiting["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
    kube.patch("v1", "ConfigMap", "child", namespace, {"metadata": {"finalizers": None}})
    kube.wait_for(
        WIDGET_API, WIDGET, "owner", namespace, gone, timeout=GC_SECONDS, description="GC"
    )


@pytest.mark.usefixtures("garbage_collector")
def test_orphan_deletion_keeps_dependents_and_drops_their_owner_reference(
    kube: KubeClient, namespace: str
) -> None:
    owner = kube.create(widget("owner"), namespace)
    kube.create(owned_by(owner, "child"), namespace)
    kube.delete(WIDGET_API, WIDGET, "owner", namespace, propagation_policy="Orphan")
    kube.wait_for(
        WIDGET_API, WIDGET, "owner", namespace, gone, timeout=GC_SECONDS, description="deletion"
    )
    child = kube.wait_for(
        "v1",
        "ConfigMap",
        "child",
        namespace,
        lambda o: o is not None and not o["metadata"].get("ownerReferences"),
        timeout=GC_SECONDS,
        description="the owner reference removed",
    )
    assert child is not None
