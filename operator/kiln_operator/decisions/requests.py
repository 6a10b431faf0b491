"""Run requests written to a TrainingJob through the API, by anyone allowed to annotate it.

Another controller (an InferenceService that detected drift), a person or a CI system asks
for a run by adding one annotation per request::

    run-request.kiln.dev/<request id>: '{"trigger": "drift", "message": "PSI 0.31 on x"}'

The request id is the annotation key's name part (a DNS-label-like name of at most 63
characters), so two writers asking with the same id write the same annotation: one
request. The value is JSON with a ``trigger`` (``manual`` or ``drift``; default
``manual``) and an optional ``message``. A request is handled once: the run's Job carries
its id (``kiln.dev/request-id``, which survives a crash before status is written) and
``status.handledRunRequests`` keeps the newest ids, so the same id written again later
starts nothing. Requests are handled in the order of their ids, one per reconcile; the
operator removes the annotation of a request once status records it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, get_args

from kiln_operator.api.trainingjob import MAX_HANDLED_RUN_REQUESTS, MAX_RUN_MESSAGE, RunTrigger

RUN_REQUEST_PREFIX: Final = "run-request.kiln.dev/"
#: Triggers a request may ask for; spec and schedule runs are the operator's own.
REQUEST_TRIGGERS: Final = ("manual", "drift")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class ApiRunRequest:
    """One request annotation, parsed; ``problem`` says why it cannot be honoured."""

    id: str
    trigger: RunTrigger = "manual"
    message: str = ""
    problem: str | None = None

    @property
    def annotation(self) -> str:
        return RUN_REQUEST_PREFIX + self.id


def request_annotation(request_id: str, trigger: RunTrigger, message: str) -> dict[str, str]:
    """The annotation that asks for a run (for writers such as the drift detector)."""
    if not _REQUEST_ID.match(request_id):
        raise ValueError(f"run request id {request_id!r} is not a valid annotation name part")
    value = json.dumps({"trigger": trigger, "message": message}, sort_keys=True)
    return {RUN_REQUEST_PREFIX + request_id: value}


def parse_request(request_id: str, value: str) -> ApiRunRequest:
    try:
        body = json.loads(value) if value.strip() else {}
    except ValueError as error:
        return ApiRunRequest(request_id, problem=f"the value is not JSON: {error}")
    if not isinstance(body, dict):
        return ApiRunRequest(request_id, problem="the value must be a JSON object")
    trigger = body.get("trigger", "manual")
    if trigger not in REQUEST_TRIGGERS or trigger not in get_args(RunTrigger):
        return ApiRunRequest(
            request_id,
            problem=f"trigger {trigger!r} is not one of {', '.join(REQUEST_TRIGGERS)}",
        )
    message = body.get("message", "")
    if not isinstance(message, str):
        return ApiRunRequest(request_id, problem="message must be a string")
    return ApiRunRequest(request_id, trigger, message[:MAX_RUN_MESSAGE])


def pending_requests(
    annotations: Mapping[str, str], handled: Iterable[str], started: Iterable[str | None]
) -> list[ApiRunRequest]:
    """Requests neither recorded as handled nor answered by an existing run, by id."""
    done = {*handled, *(request_id for request_id in started if request_id)}
    found = []
    for key, value in annotations.items():
        if not key.startswith(RUN_REQUEST_PREFIX):
            continue
        request_id = key[len(RUN_REQUEST_PREFIX) :]
        if request_id in done:
            continue
        found.append(parse_request(request_id, value))
    return sorted(found, key=lambda request: request.id)


def handled_requests(previous: Sequence[str], newly: Iterable[str]) -> list[str]:
    """``status.handledRunRequests`` after handling ``newly``: the newest ids, in order."""
    ids = [request_id for request_id in previous]
    for request_id in newly:
        if request_id not in ids:
            ids.append(request_id)
    return ids[-MAX_HANDLED_RUN_REQUESTS:]


def settled_request_annotations(
    annotations: Mapping[str, str], recorded: Iterable[str]
) -> list[str]:
    """Request annotations whose ids status already records: safe to remove."""
    done = set(recorded)
    return sorted(
        key
        for key in annotations
        if key.startswith(RUN_REQUEST_PREFIX) and key[len(RUN_REQUEST_PREFIX) :] in done
    )
