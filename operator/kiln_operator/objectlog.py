"""Log lines about one Kubernetes object, structured the way kopf's own are.

Every line a reconciler writes is about one object. :func:`object_log` puts the object's
kind, namespace and name in front of the text (``TrainingJob ml/iris: started run ...``) for
plain logs, and into an ``object`` attribute of the record, which kopf's JSON log format
(``--log-format json``) writes as a field, the same field its own per-object lines carry.
So ``jq 'select(.object.name == "iris")'`` finds Kiln's lines and kopf's alike.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

OPERATOR_LOGGER = "kiln.operator"


class ObjectLog(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every line names one object, in its text and as a structured field."""

    def __init__(self, logger: logging.Logger, kind: str, namespace: str, name: str) -> None:
        super().__init__(logger, {"object": {"kind": kind, "namespace": namespace, "name": name}})
        self.prefix = f"{kind} {namespace}/{name}: "

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return f"{self.prefix}{msg}", kwargs


def object_log(kind: str, namespace: str, name: str) -> ObjectLog:
    return ObjectLog(logging.getLogger(OPERATOR_LOGGER), kind, namespace, name)
