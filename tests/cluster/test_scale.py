"""The backend carries operator-scale load: 1,000 objects under 50 concurrent watches.

Every watch must see every object exactly once, in resourceVersion order, with no error
event (resuming from the last version it saw when the server closes it early, as a real
server does to a client that reads too slowly); every write must succeed; and a paginated
list must return all 1,000. Run for a
built-in kind and for a custom resource (schema validation and defaulting on each write),
since the operator's own kinds are custom resources.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cluster.conftest import WIDGET, WIDGET_API, config_map, widget
from tests.support.kube import KubeClient, Obj

OBJECTS = 1000
WATCHES = 50
WRITERS = 8
LABELS = {"load": "yes"}


def labelled_config_map(index: int) -> Obj:
    return config_map(f"load-{index:04d}", labels=LABELS, i=str(index))


def labelled_widget(index: int) -> Obj:
    manifest = widget(f"load-{index:04d}", replicas=index % 100)
    manifest["metadata"]["labels"] = LABELS
    return manifest


KINDS: dict[str, tuple[str, str, Callable[[int], Obj]]] = {
    "configmaps": ("v1", "ConfigMap", labelled_config_map),
    "widgets": (WIDGET_API, WIDGET, labelled_widget),
}


@pytest.mark.slow
@pytest.mark.usefixtures("widget_crd")
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_thousand_objects_reach_fifty_concurrent_watches(
    kube: KubeClient, namespace: str, kind: str
) -> None:
    api_version, kind_name, build = KINDS[kind]
    listed = kube.list(api_version, kind_name, namespace, label_selector="load=yes")
    start = listed["metadata"]["resourceVersion"]
    seen: list[list[Obj]] = [[] for _ in range(WATCHES)]
    errors: list[BaseException] = []
    ready = threading.Barrier(WATCHES + 1)

    def open_watch(resource_version: str, timeout: float) -> Iterator[Obj]:
        return kube.watch(
            api_version,
            kind_name,
            namespace,
            resource_version=resource_version,
            label_selector="load=yes",
            timeout=timeout,
        )

    def watch(index: int) -> None:
        deadline = time.monotonic() + 120
        resume_from = start
        try:
            # The watch request is sent (and accepted) before the barrier releases the writers.
            events = open_watch(resume_from, 120)
            ready.wait()
            while True:
                for event in events:
                    if event["type"] != "BOOKMARK":
                        seen[index].append(event)
                    if event["type"] == "ERROR" or len(seen[index]) == OBJECTS:
                        return
                    resume_from = event["object"]["metadata"]["resourceVersion"]
                # A real API server closes a watch whose client reads too slowly for its
                # buffer; a client resumes from the last version it saw, as informers do.
                remaining = deadline - time.monotonic()
                if remaining <= 1:
                    return
                events = open_watch(resume_from, remaining)
        except BaseException as error:  # collected and reported by the main thread
            errors.append(error)
            ready.abort()

    watchers = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(WATCHES)]
    for thread in watchers:
        thread.start()
    ready.wait(timeout=60)

    began = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        created = list(pool.map(lambda i: kube.create(build(i), namespace), range(OBJECTS)))
    write_seconds = time.monotonic() - began
    for thread in watchers:
        thread.join(timeout=120)
    delivery_seconds = time.monotonic() - began

    assert errors == []
    assert len(created) == OBJECTS
    expected_names = {f"load-{i:04d}" for i in range(OBJECTS)}
    for index, events in enumerate(seen):
        assert [e for e in events if e["type"] != "ADDED"] == [], index
        names = [e["object"]["metadata"]["name"] for e in events]
        assert len(names) == OBJECTS, f"watch {index} saw {len(names)} of {OBJECTS} objects"
        assert set(names) == expected_names
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions)

    listed_items: list[Obj] = []
    token = None
    while True:
        page = kube.list(
            api_version,
            kind_name,
            namespace,
            label_selector="load=yes",
            limit=250,
            **({"continue": token} if token else {}),
        )
        listed_items.extend(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            break
    assert {o["metadata"]["name"] for o in listed_items} == expected_names
    print(
        f"\n{kind}: {OBJECTS} creates by {WRITERS} writers in {write_seconds:.2f}s; "
        f"all delivered to {WATCHES} watches in {delivery_seconds:.2f}s"
    )
