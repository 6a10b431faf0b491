"""List-then-watch as kopf and every controller use it.

A watch started at a list's resourceVersion sees each later change exactly once and in
order; a watch resumed from a resourceVersion taken mid-stream replays only what came
after it; bookmarks carry a resourceVersion to resume from; selectors filter the stream;
a compacted resourceVersion ends the watch with a 410 Expired ERROR event; and
``timeoutSeconds`` ends the stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.cluster.conftest import WIDGET, WIDGET_API, config_map, widget
from tests.support.kube import KubeClient, Obj

pytestmark = pytest.mark.usefixtures("widget_crd")


def summary(events: list[Obj]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events if e["type"] != "BOOKMARK"]


def collect(events: Iterator[Obj], count: int) -> list[Obj]:
    """The first ``count`` non-bookmark events (fewer if the stream ends first)."""
    seen: list[Obj] = []
    for event in events:
        if event["type"] != "BOOKMARK":
            seen.append(event)
        if len(seen) == count:
            break
    return seen


def test_watch_from_a_list_sees_every_later_change_in_order(
    kube: KubeClient, namespace: str
) -> None:
    kube.create(widget("before"), namespace)
    listed = kube.list(WIDGET_API, WIDGET, namespace)
    kube.create(widget("w"), namespace)
    kube.patch(WIDGET_API, WIDGET, "w", namespace, {"spec": {"replicas": 2}})
    kube.delete(WIDGET_API, WIDGET, "w", namespace)
    events = kube.watch(
        WIDGET_API,
        WIDGET,
        namespace,
        resource_version=listed["metadata"]["resourceVersion"],
        timeout=5,
    )
    seen = collect(events, 3)
    assert summary(seen) == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert seen[1]["object"]["spec"]["replicas"] == 2
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
    assert versions == sorted(versions)


def test_watch_without_a_resource_version_starts_with_the_current_objects(
    kube: KubeClient, namespace: str
) -> None:
    kube.create(widget("a"), namespace)
    kube.create(widget("b"), namespace)
    seen = collect(kube.watch(WIDGET_API, WIDGET, namespace, timeout=5), 2)
    assert sorted(summary(seen)) == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_resumed_mid_stream_replays_only_later_changes(
    kube: KubeClient, namespace: str
) -> None:
    start = kube.list(WIDGET_API, WIDGET, namespace)["metadata"]["resourceVersion"]
    first = kube.create(widget("one"), namespace)
    kube.create(widget("two"), namespace)
    kube.patch(WIDGET_API, WIDGET, "one", namespace, {"spec": {"replicas": 2}})
    resumed = kube.watch(
        WIDGET_API,
        WIDGET,
        namespace,
        resource_version=first["metadata"]["resourceVersion"],
        timeout=5,
    )
    assert summary(collect(resumed, 2)) == [("ADDED", "two"), ("MODIFIED", "one")]
    from_start = kube.watch(WIDGET_API, WIDGET, namespace, resource_version=start, timeout=5)
    assert summary(collect(from_start, 3)) == [
        ("ADDED", "one"),
        ("ADDED", "two"),
        ("MODIFIED", "one"),
    ]


def test_watch_with_a_label_selector_sees_only_matching_objects(
    kube: KubeClient, namespace: str
) -> None:
    start = kube.list("v1", "ConfigMap", namespace)["metadata"]["resourceVersion"]
    kube.create(config_map("yes", labels={"team": "ml"}), namespace)
    kube.create(config_map("no", labels={"team": "web"}), namespace)
    kube.create(config_map("yes-too", labels={"team": "ml"}), namespace)
    events = kube.watch(
        "v1", "ConfigMap", namespace, resource_version=start, label_selector="team=ml", timeout=5
    )
    # "no" was written between the two: seeing these two first proves it was filtered out.
    assert summary(collect(events, 2)) == [("ADDED", "yes"), ("ADDED", "yes-too")]


def test_watch_with_a_field_selector_follows_one_object(kube: KubeClient, namespace: str) -> None:
    start = kube.list("v1", "ConfigMap", namespace)["metadata"]["resourceVersion"]
    kube.create(config_map("mine"), namespace)
    kube.create(config_map("other"), namespace)
    kube.patch("v1", "ConfigMap", "mine", namespace, {"data": {"k": "v"}})
    events = kube.watch(
        "v1",
        "ConfigMap",
        namespace,
        resource_version=start,
        field_selector="metadata.name=mine",
        timeout=5,
    )
    assert summary(collect(events, 2)) == [("ADDED", "mine"), ("MODIFIED", "mine")]


def test_bookmarks_carry_a_resource_version_to_resume_from(
    kube: KubeClient, namespace: str
) -> None:
    first = kube.create(widget("w1"), namespace)
    # A real API server (v1.28 watch cache) sends a bookmark two seconds before a watch's
    # timeout (and every minute), carrying the newest change it has seen of the resource,
    # when that change came after the watch started (past what it replayed).
    stream = kube.watch(
        WIDGET_API,
        WIDGET,
        namespace,
        resource_version=first["metadata"]["resourceVersion"],
        allow_bookmarks=True,
        timeout=5,
    )
    second = kube.create(widget("w2"), namespace)
    events = list(stream)
    assert summary(events) == [("ADDED", "w2")]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, f"no BOOKMARK among {[e['type'] for e in events]}"
    bookmark = bookmarks[-1]["object"]
    assert bookmark["kind"] == WIDGET
    assert bookmark["apiVersion"] == WIDGET_API
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(
        second["metadata"]["resourceVersion"]
    )


def test_no_bookmark_goes_back_behind_a_delivered_change(kube: KubeClient, namespace: str) -> None:
    """A bookmark never takes the watch back behind a change it has delivered (recorded on
    kube-apiserver v1.28.7: no bookmark at all in 5, 8 or 12 s watches on a quiet server;
    where controllers change Widgets elsewhere, bookmarks past them; and on the full control
    plane, when the watch cache had not yet seen w2 as the watch began, so that w2 came as a
    live event, a bookmark at w2's own version, which the cache sends because it is past
    the version the watch started from)."""
    first = kube.create(widget("w1"), namespace)
    second = kube.create(widget("w2"), namespace)
    events = list(
        kube.watch(
            WIDGET_API,
            WIDGET,
            namespace,
            resource_version=first["metadata"]["resourceVersion"],
            allow_bookmarks=True,
            timeout=5,
        )
    )
    assert summary(events) == [("ADDED", "w2")]
    replayed = int(second["metadata"]["resourceVersion"])
    bookmarked = [
        int(e["object"]["metadata"]["resourceVersion"]) for e in events if e["type"] == "BOOKMARK"
    ]
    assert all(version >= replayed for version in bookmarked), (bookmarked, replayed)


def test_watch_without_bookmarks_requested_sends_none(kube: KubeClient, namespace: str) -> None:
    created = kube.create(widget("w"), namespace)
    events = list(
        kube.watch(
            WIDGET_API,
            WIDGET,
            namespace,
            resource_version=created["metadata"]["resourceVersion"],
            timeout=2,
        )
    )
    assert [e for e in events if e["type"] == "BOOKMARK"] == []


def test_watch_ends_when_its_timeout_expires(kube: KubeClient, namespace: str) -> None:
    started = time.monotonic()
    events = list(kube.watch(WIDGET_API, WIDGET, namespace, resource_version="0", timeout=2))
    elapsed = time.monotonic() - started
    assert summary(events) == []
    assert 1.5 <= elapsed < 6, elapsed


def test_watch_from_a_too_old_resource_version_is_expired(kube: KubeClient, namespace: str) -> None:
    # The Widget kind is served since its CRD was established, long after version 1: its
    # watch cache cannot replay from there. (A built-in kind on a young cluster can; so
    # the test names a kind whose history starts well after the version asked for.)
    kube.create(widget("w"), namespace)
    (event,) = list(kube.watch(WIDGET_API, WIDGET, namespace, resource_version="1", timeout=3))
    assert event["type"] == "ERROR"
    status = event["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version: 1 (")
