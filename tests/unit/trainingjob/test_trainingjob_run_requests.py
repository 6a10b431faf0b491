"""Run requests written through the API: parsed, handled once per id, settled."""

from __future__ import annotations

import json

import pytest

from kiln_operator.decisions.requests import (
    handled_requests,
    parse_request,
    pending_requests,
    request_annotation,
    settled_request_annotations,
)


def test_a_request_annotation_round_trips() -> None:
    ((key, value),) = request_annotation("drift-1", "drift", "PSI 0.3").items()
    assert key == "run-request.kiln.dev/drift-1"
    request = parse_request("drift-1", value)
    assert (request.trigger, request.message, request.problem) == ("drift", "PSI 0.3", None)


def test_a_request_id_that_is_no_annotation_name_is_refused_to_its_writer() -> None:
    with pytest.raises(ValueError, match="not a valid annotation name"):
        request_annotation("no spaces please", "manual", "")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        (json.dumps({"trigger": "schedule"}), "'schedule' is not one of manual, drift"),
        (json.dumps({"message": 3}), "message must be a string"),
    ],
)
def test_an_unusable_request_says_why(value: str, problem: str) -> None:
    request = parse_request("r", value)
    assert request.problem is not None
    assert problem in request.problem


def test_an_empty_value_is_a_manual_request() -> None:
    assert parse_request("r", "").trigger == "manual"


def test_pending_requests_skip_handled_ids_and_ids_a_run_already_answers() -> None:
    annotations = {
        "run-request.kiln.dev/b": "{}",
        "run-request.kiln.dev/a": "{}",
        "run-request.kiln.dev/done": "{}",
        "run-request.kiln.dev/crashed": "{}",
        "kiln.dev/run": "x",
    }
    pending = pending_requests(annotations, ["done"], ["crashed", None])
    assert [request.id for request in pending] == ["a", "b"]


def test_handled_ids_keep_the_newest_within_the_schema_bound() -> None:
    previous = [f"r{i}" for i in range(32)]
    handled = handled_requests(previous, ["r5", "new"])
    assert len(handled) == 32
    assert handled[-1] == "new"
    assert "r0" not in handled


def test_only_recorded_requests_are_settled() -> None:
    annotations = {"run-request.kiln.dev/a": "{}", "run-request.kiln.dev/b": "{}", "x": "y"}
    assert settled_request_annotations(annotations, ["a"]) == ["run-request.kiln.dev/a"]
