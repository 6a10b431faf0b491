"""The backend carries operator-scale load: 1,000 objects under 50 concurrent watches.

Every watch must see every object exactly once, in resourceVersion order, with no error
event; every write must succeed; and a paginated list must return all 1,000.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cluster.conftest import config_map
from tests.support.kube import KubeClient, Obj

OBJECTS = 1000
WATCHES = 50
WRITERS = 8


@pytest.mark.slow
def test_a_thousand_objects_reach_fifty_concurrent_watches(
    kube: KubeClient, namespace: str
) -> None:
    start = kube.list("v1", "ConfigMap", namespace, label_selector="load=yes")["metadata"][
        "resourceVersion"
    ]
    seen: list[list[Obj]] = [[] for _ in range(WATCHES)]
    errors: list[BaseException] = []
    ready = threading.Barrier(WATCHES + 1)

    def watch(index: int) -> None:
        try:
            events = kube.watch(
                "v1",
                "ConfigMap",
                namespace,
                resource_version=start,
                label_selector="load=yes",
                timeout=120,
            )
            ready.wait()
            for event in events:
                seen[index].append(event)
                if event["type"] == "ERROR" or len(seen[index]) == OBJECTS:
                    return
        except BaseException as error:  # collected and reported by the main thread
            errors.append(error)
            ready.abort()

    watchers = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(WATCHES)]
    for thread in watchers:
        thread.start()
    ready.wait(timeout=60)

    began = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        created = list(
            pool.map(
                lambda i: kube.create(
                    config_map(f"load-{i:04d}", labels={"load": "yes"}, i=str(i)), namespace
                ),
                range(OBJECTS),
            )
        )
    write_seconds = time.monotonic() - began
    for thread in watchers:
        thread.join(timeout=120)
    delivery_seconds = time.monotonic() - began

    assert errors == []
    assert len(created) == OBJECTS
    expected_names = {f"load-{i:04d}" for i in range(OBJECTS)}
    for index, events in enumerate(seen):
        assert [e for e in events if e["type"] not in ("ADDED", "BOOKMARK")] == [], index
        names = [e["object"]["metadata"]["name"] for e in events]
        assert len(names) == OBJECTS, f"watch {index} saw {len(names)} of {OBJECTS} objects"
        assert set(names) == expected_names
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions)

    listed: list[Obj] = []
    token = None
    while True:
        page = kube.list(
            "v1",
            "ConfigMap",
            namespace,
            label_selector="load=yes",
            limit=250,
            **({"continue": token} if token else {}),
        )
        listed.extend(page["items"])
        token = page["metadata"].get("continue")
        if not token:
            break
    assert {o["metadata"]["name"] for o in listed} == expected_names
    print(
        f"\n{OBJECTS} creates by {WRITERS} writers in {write_seconds:.2f}s; "
        f"all delivered to {WATCHES} watches in {delivery_seconds:.2f}s"
    )
