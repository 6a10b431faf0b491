"""The operator's own Prometheus metrics, defined once so every module counts the same way.

They are served by ``kiln-operator --metrics-port`` from the default registry. Tests read
``kiln_operator_api_requests_total`` to prove that a steady-state reconcile writes nothing.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

#: Verbs that change something on the API server.
WRITE_VERBS: Final = frozenset({"create", "apply", "patch", "delete"})

API_REQUESTS: Final = Counter(
    "kiln_operator_api_requests_total",
    "Requests the operator sent to the Kubernetes API, by verb, resource and HTTP status code "
    "(code 0: no answer, the connection failed).",
    ["verb", "resource", "code"],
)

RECONCILES: Final = Counter(
    "kiln_operator_reconciles_total",
    "Reconciles of a Kiln object, by kind and result (ok, requeued, error).",
    ["kind", "result"],
)

RECONCILE_SECONDS: Final = Histogram(
    "kiln_operator_reconcile_duration_seconds",
    "Wall-clock time of one reconcile, by kind.",
    ["kind"],
)

WATCH_EVENTS: Final = Counter(
    "kiln_operator_watch_events_total",
    "Objects a controller's watches delivered (listed or changed), by controller kind and "
    "watched resource.",
    ["kind", "resource"],
)

QUEUE_DEPTH: Final = Gauge(
    "kiln_operator_workqueue_depth",
    "Keys waiting in a controller's work queue, by kind and lane: change (an event, "
    "something due, a retry) or recheck (only to be sure; served after every change).",
    ["kind", "lane"],
)
