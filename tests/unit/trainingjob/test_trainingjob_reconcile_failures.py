"""A reconcile that meets a refusing API server or an unreadable object: the problem becomes a
condition and a Warning event, a permanent one is not retried until the spec changes, and a
reconcile with nothing new writes nothing.

The API is faked at Kiln's own boundary (the methods of :class:`kiln_operator.kube.Kube`),
because the refusals under test (a Job the API server's pod validation rejects, RBAC) are
not something the API emulator of the cluster tier reproduces.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import itertools
from typing import Any

import pytest

from kiln_operator import kube, naming
from kiln_operator.api.trainingjob import TrainingJobSpec
from kiln_operator.controller.context import OperatorContext
from kiln_operator.controller.runner import Recheck
from kiln_operator.decisions.intent import intent_hash
from kiln_operator.reconcilers.trainingjob import reconcile
from tests.unit.trainingjob.factories import training_job

Obj = dict[str, Any]
NOW = dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC)
WRITES = ("create", "patch", "delete")


class FakeKube:
    """An in-memory stand-in for :class:`kube.Kube` that records every call and raises the
    errors a test plants for a verb and resource."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.calls: list[tuple[str, str]] = []
        self.refusals: dict[tuple[str, str], kube.ApiError] = {}
        self._uids = itertools.count(1)

    def refuse(self, verb: str, resource: kube.Resource, status: int, message: str) -> None:
        path = resource.collection_path("ml")
        error = {403: kube.Forbidden, 404: kube.NotFound, 422: kube.Invalid}[status]
        self.refusals[(verb, resource.plural)] = error(verb, path, status, {"message": message})

    def writes(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if call[0] in WRITES]

    def _call(self, verb: str, resource: kube.Resource) -> None:
        self.calls.append((verb, resource.plural))
        refusal = self.refusals.get((verb, resource.plural))
        if refusal is not None:
            raise refusal

    async def get_or_none(self, resource: kube.Resource, name: str, namespace: str) -> Obj | None:
        self._call("get", resource)
        found = self.objects.get((resource.plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(
        self, resource: kube.Resource, namespace: str, label_selector: str | None = None
    ) -> list[Obj]:
        self._call("list", resource)
        wanted = dict([label_selector.split("=", 1)]) if label_selector else {}
        return [
            copy.deepcopy(obj)
            for (plural, ns, _), obj in sorted(self.objects.items())
            if plural == resource.plural
            and ns == namespace
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]

    async def create(self, resource: kube.Resource, obj: Obj, namespace: str) -> Obj:
        self._call("create", resource)
        meta = obj["metadata"]
        name = meta.get("name") or f"{meta.get('generateName', 'x')}{next(self._uids)}"
        key = (resource.plural, namespace, name)
        if key in self.objects:
            raise kube.AlreadyExists("create", name, 409, {"reason": "AlreadyExists"})
        stored = copy.deepcopy(obj)
        stored["metadata"].update(name=name, namespace=namespace, uid=f"uid-{next(self._uids)}")
        stored["metadata"].setdefault("creationTimestamp", "2026-03-02T10:00:00Z")
        stored["metadata"].setdefault("generation", 1)
        stored["metadata"]["resourceVersion"] = str(next(self._uids))
        self.objects[key] = stored
        return copy.deepcopy(stored)

    async def merge_patch(
        self,
        resource: kube.Resource,
        name: str,
        namespace: str,
        patch: Obj,
        subresource: str | None = None,
    ) -> Obj:
        self._call("patch", resource)
        obj = self.objects.get((resource.plural, namespace, name))
        if obj is None:
            raise kube.NotFound("patch", name, 404, {"reason": "NotFound"})
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != obj["metadata"].get("resourceVersion"):
            raise kube.Conflict("patch", name, 409, {"reason": "Conflict"})
        _merge(obj, patch)
        obj["metadata"]["resourceVersion"] = str(next(self._uids))
        return copy.deepcopy(obj)

    async def delete(self, resource: kube.Resource, name: str, namespace: str, **_: Any) -> None:
        self._call("delete", resource)
        self.objects.pop((resource.plural, namespace, name), None)

    # -- what tests look at -----------------------------------------------------------------

    def add_training_job(self, obj: Obj) -> None:
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("resourceVersion", "1")
        self.objects[("trainingjobs", "ml", obj["metadata"]["name"])] = stored

    def training_job(self) -> Obj:
        return self.objects[("trainingjobs", "ml", "iris")]

    def edit_spec(self, **spec: Any) -> None:
        tj = self.training_job()
        tj["spec"].update(spec)
        tj["metadata"]["generation"] += 1
        tj["metadata"]["resourceVersion"] = str(next(self._uids))

    def ready(self) -> Obj:
        conditions = self.training_job().get("status", {}).get("conditions", [])
        return next(c for c in conditions if c["type"] == "Ready")

    def events(self) -> list[tuple[str, str]]:
        return [
            (obj["type"], obj["reason"])
            for (plural, _, _), obj in self.objects.items()
            if plural == "events"
        ]

    def jobs(self) -> list[str]:
        return [name for (plural, _, name) in self.objects if plural == "jobs"]


def _merge(target: Obj, patch: Obj) -> None:
    """A JSON merge patch (RFC 7386), in place."""
    for field, value in patch.items():
        if value is None:
            target.pop(field, None)
        elif isinstance(value, dict) and isinstance(target.get(field), dict):
            _merge(target[field], value)
        else:
            target[field] = copy.deepcopy(value)


def run_reconcile(api: FakeKube) -> float | Recheck | None:
    client: Any = api
    ctx = dataclasses.replace(OperatorContext.of(client), clock=lambda: NOW)
    return asyncio.run(reconcile(ctx, ("ml", "iris")))


def first_run_name(api: FakeKube, number: int = 1) -> str:
    spec = TrainingJobSpec.model_validate(api.training_job()["spec"])
    return naming.run_name("iris", number, intent_hash(spec))


@pytest.fixture
def api() -> FakeKube:
    fake = FakeKube()
    fake.add_training_job(training_job())
    return fake


def test_a_job_the_api_server_refuses_is_a_condition_and_a_warning_event(api: FakeKube) -> None:
    api.refuse("create", kube.JOBS, 422, 'Job.batch "iris-r1" is invalid: env[0].valueFrom')
    run_reconcile(api)
    ready = api.ready()
    assert (ready["status"], ready["reason"]) == ("False", "RunRejected")
    assert "env[0].valueFrom" in ready["message"]
    assert ready["observedGeneration"] == 1
    assert ("Warning", "RunRejected") in api.events()
    assert api.jobs() == []


def test_a_refused_job_is_not_retried_until_the_spec_changes(api: FakeKube) -> None:
    api.refuse("create", kube.JOBS, 422, "spec.template: Invalid value")
    run_reconcile(api)
    api.calls.clear()

    run_reconcile(api)
    run_reconcile(api)
    assert api.writes() == [], "a refused Job was retried although the spec is unchanged"

    del api.refusals[("create", "jobs")]
    api.edit_spec(image="train:2")
    run_reconcile(api)
    assert len(api.jobs()) == 1
    assert api.ready()["reason"] != "RunRejected"


def test_a_forbidden_write_is_a_condition_and_raised_for_a_retry_with_backoff(
    api: FakeKube,
) -> None:
    api.refuse("create", kube.JOBS, 403, 'jobs.batch is forbidden: User "kiln" cannot create')
    with pytest.raises(kube.Forbidden):
        run_reconcile(api)
    ready = api.ready()
    assert (ready["status"], ready["reason"]) == ("False", "ApiRequestRefused")
    assert "grant the operator's service account" in ready["message"]
    assert ("Warning", "ApiRequestRefused") in api.events()

    # Still forbidden: retried (not remembered), but status and events are not rewritten.
    api.calls.clear()
    with pytest.raises(kube.Forbidden):
        run_reconcile(api)
    assert api.writes() == [("create", "jobs")]

    del api.refusals[("create", "jobs")]
    run_reconcile(api)
    assert len(api.jobs()) == 1
    assert api.ready()["reason"] == "NoRunFinished"


def test_a_spec_the_operator_cannot_read_is_a_condition_not_a_crash(api: FakeKube) -> None:
    api.training_job()["spec"]["workers"] = "many"
    outcome = run_reconcile(api)
    assert outcome is None
    ready = api.ready()
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.workers" in ready["message"]
    assert ("Warning", "InvalidSpec") in api.events()
    assert api.jobs() == []

    api.calls.clear()
    run_reconcile(api)
    assert api.writes() == []


def test_a_second_reconcile_of_an_unchanged_world_writes_nothing(api: FakeKube) -> None:
    run_reconcile(api)
    assert len(api.jobs()) == 1
    run_reconcile(api)  # sees its own Job and status
    api.calls.clear()
    run_reconcile(api)
    assert api.writes() == []


def leftover_job(name: str, number: int, labelled: bool) -> Obj:
    """A Job of a namesake TrainingJob deleted with ``--cascade=orphan`` (or anyone's Job)."""
    metadata: Obj = {
        "name": name,
        "namespace": "ml",
        "uid": f"old-{name}",
        "annotations": {"kiln.dev/run-number": str(number)},
        "ownerReferences": [{"kind": "TrainingJob", "name": "iris", "uid": "a-former-iris"}],
    }
    if labelled:
        metadata["labels"] = {"kiln.dev/trainingjob": "iris"}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {}}


def test_runs_left_by_a_deleted_namesake_are_numbered_past_not_collided_with(
    api: FakeKube,
) -> None:
    for number in (1, 2):
        name = first_run_name(api, number)
        api.objects[("jobs", "ml", name)] = leftover_job(name, number, labelled=True)
    run_reconcile(api)
    assert first_run_name(api, 3) in api.jobs()
    assert [row["name"] for row in api.training_job()["status"]["runs"]] == [first_run_name(api, 3)]


def test_a_foreign_job_holding_the_next_runs_name_is_a_condition_not_a_tight_loop(
    api: FakeKube,
) -> None:
    name = first_run_name(api)
    api.objects[("jobs", "ml", name)] = leftover_job(name, 1, labelled=False)
    outcome = run_reconcile(api)
    ready = api.ready()
    assert (ready["status"], ready["reason"]) == ("False", "RunNameTaken")
    assert name in ready["message"]
    assert ("Warning", "RunNameTaken") in api.events()
    assert isinstance(outcome, Recheck), "a blocked TrainingJob waits only for a recheck"
    assert outcome.seconds >= 30

    del api.objects[("jobs", "ml", name)]
    run_reconcile(api)
    assert api.jobs() == [name]
    assert api.objects[("jobs", "ml", name)]["metadata"]["uid"] != f"old-{name}"


def test_a_child_that_vanished_before_a_write_means_read_again_not_a_refusal(
    api: FakeKube,
) -> None:
    run_reconcile(api)
    api.edit_spec(suspend=True)
    api.refuse("patch", kube.JOBS, 404, 'jobs.batch "iris-r1" not found')
    outcome = run_reconcile(api)
    assert isinstance(outcome, float), "a lost race is a change: read again soon"
    assert outcome <= 1
    assert api.ready()["reason"] != "ApiRequestRefused"
    assert ("Warning", "ApiRequestRefused") not in api.events()


def test_a_create_answered_404_is_a_missing_kind_refused_not_a_race(api: FakeKube) -> None:
    api.refuse("create", kube.JOBS, 404, "the server could not find the requested resource")
    with pytest.raises(kube.NotFound):
        run_reconcile(api)
    assert api.ready()["reason"] == "ApiRequestRefused"


def test_an_own_job_stripped_of_its_label_is_a_condition_not_a_tight_loop(api: FakeKube) -> None:
    name = first_run_name(api)
    stripped = leftover_job(name, 1, labelled=False)
    stripped["metadata"]["ownerReferences"][0]["uid"] = api.training_job()["metadata"]["uid"]
    api.objects[("jobs", "ml", name)] = stripped
    outcome = run_reconcile(api)
    assert api.ready()["reason"] == "RunNameTaken"
    assert "lost its kiln.dev/trainingjob label" in api.ready()["message"]
    assert isinstance(outcome, Recheck), "a blocked TrainingJob waits only for a recheck"
    assert outcome.seconds >= 30
