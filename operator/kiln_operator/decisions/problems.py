"""Problems that stop a TrainingJob from starting runs, each as the ``Ready`` verdict that
tells the user what is wrong and what to do.

Some are read off the spec and the operator's configuration (an unknown accelerator type,
an unusable schedule, hyperparameter names that cannot become distinct variables); some
only the API server can find (a spec the operator's model cannot read, a Job it refuses
with 422, a request RBAC forbids). A refused Job is permanent for its spec: it is
remembered through the ``Ready`` condition's ``observedGeneration`` and not retried until
the spec changes, while a refused request of any other kind is retried with backoff (a
human may fix RBAC or a quota meanwhile).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from kiln_operator import naming
from kiln_operator.accelerators import AcceleratorMap
from kiln_operator.api.trainingjob import TrainingJobSpec
from kiln_operator.conditions import Verdict, find_condition
from kiln_operator.decisions.schedule import ScheduleError, validate_schedule

UNKNOWN_ACCELERATOR: Final = "UnknownAccelerator"
INVALID_SCHEDULE: Final = "InvalidSchedule"
INVALID_HYPERPARAMETERS: Final = "InvalidHyperparameters"
INVALID_SPEC: Final = "InvalidSpec"
RUN_REJECTED: Final = "RunRejected"
RUN_NAME_TAKEN: Final = "RunNameTaken"
API_REQUEST_REFUSED: Final = "ApiRequestRefused"

#: How many of a spec's validation errors a condition lists.
_LISTED_ERRORS: Final = 5


def configuration_problem(spec: TrainingJobSpec, accelerators: AcceleratorMap) -> Verdict | None:
    """A reason no run can start until someone fixes the spec or the operator's config."""
    if spec.accelerator is not None and accelerators.node_selector(spec.accelerator.type) is None:
        message = accelerators.unknown_type_message(spec.accelerator.type)
        return Verdict("Ready", "False", UNKNOWN_ACCELERATOR, message)
    if spec.schedule:
        try:
            validate_schedule(spec.schedule, spec.time_zone)
        except ScheduleError as error:
            return Verdict("Ready", "False", INVALID_SCHEDULE, str(error))
    unusable = hyperparameter_name_problem(spec.hyperparameters or {})
    if unusable is not None:
        return Verdict("Ready", "False", INVALID_HYPERPARAMETERS, unusable)
    return None


def hyperparameter_name_problem(hyperparameters: Mapping[str, str]) -> str | None:
    """Why the hyperparameters' names cannot become distinct ``KILN_HP_<NAME>`` variables:
    a name with no letter or digit, or two names that differ only in case or punctuation."""
    meaningless = sorted(name for name in hyperparameters if not any(c.isalnum() for c in name))
    if meaningless:
        return (
            f"hyperparameter names {meaningless} have no letter or digit to name an "
            "environment variable after; rename them"
        )
    by_variable: dict[str, list[str]] = {}
    for name in sorted(hyperparameters):
        by_variable.setdefault(naming.hyperparameter_env_name(name), []).append(name)
    clashes = [
        f"{names} -> {variable}" for variable, names in by_variable.items() if len(names) > 1
    ]
    if clashes:
        return (
            "hyperparameters would share an environment variable: "
            + "; ".join(clashes)
            + "; rename them so each has its own"
        )
    return None


def unreadable_spec(errors: Sequence[Mapping[str, Any]]) -> Verdict:
    """The verdict on a spec the operator cannot read (``errors`` as pydantic lists them).

    The CRD schema is generated from the same model, so this means a CRD older than the
    operator, or an object stored before the schema tightened.
    """
    listed = [
        f"spec.{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
        for error in errors[:_LISTED_ERRORS]
    ]
    more = f" (and {len(errors) - _LISTED_ERRORS} more)" if len(errors) > _LISTED_ERRORS else ""
    return Verdict(
        "Ready",
        "False",
        INVALID_SPEC,
        "the operator cannot read the spec: "
        + "; ".join(listed)
        + more
        + ". Fix the spec, or install the CRDs that match the operator's version",
    )


def rejected_run(run: str, api_message: str) -> Verdict:
    """The verdict when the API server refused (422) the Job of ``run``."""
    return Verdict(
        "Ready",
        "False",
        RUN_REJECTED,
        f"the API server refused the Job of run {run}: {api_message}. Fix the spec (often an "
        "env, resources or security context field); no run starts until the spec changes",
    )


def run_name_taken(run: str, owned: bool) -> Verdict:
    """The verdict when a Job the operator cannot count as a run of this TrainingJob holds
    the name of its next run: someone else's (``owned`` False), or one of its own that lost
    the ``kiln.dev/trainingjob`` label the operator finds runs by."""
    problem = (
        "has lost its kiln.dev/trainingjob label, so it cannot be followed as a run; restore "
        "the label or delete that Job"
        if owned
        else "is not owned by this TrainingJob; delete or rename that Job"
    )
    return Verdict(
        "Ready",
        "False",
        RUN_NAME_TAKEN,
        f"run {run} cannot start: the Job named {run} {problem}",
    )


def remembered_rejection(
    conditions: Sequence[Mapping[str, Any]], generation: int
) -> Verdict | None:
    """The rejection recorded for this very spec generation, if any: retrying the same Job
    would only be refused again."""
    ready = find_condition(conditions, "Ready")
    if (
        ready is None
        or ready.get("reason") != RUN_REJECTED
        or ready.get("observedGeneration") != generation
    ):
        return None
    return Verdict("Ready", "False", RUN_REJECTED, str(ready.get("message") or ""))


def refused_request(verb: str, path: str, status: int, api_message: str) -> Verdict:
    """The verdict when the API server refused a request for a reason a retry may outlive
    (RBAC, a quota, an admission webhook)."""
    hint = (
        "grant the operator's service account this permission, or raise the quota"
        if status == 403
        else "the operator retries with backoff"
    )
    return Verdict(
        "Ready",
        "False",
        API_REQUEST_REFUSED,
        f"the API server refused to {verb} {path} ({status}): {api_message}; {hint}",
    )


def prevailing_problem(
    *,
    configuration: Verdict | None,
    remembered: Verdict | None,
    schedule_error: str | None,
    refusal: Verdict | None,
    rejection: Verdict | None,
) -> Verdict | None:
    """The one problem ``Ready`` reports when several apply, newest evidence first: this
    reconcile's refused run, then a request the API server refused, then what is wrong with
    the configuration, then a rejection remembered for this generation, then the schedule."""
    for verdict in (rejection, refusal, configuration, remembered):
        if verdict is not None:
            return verdict
    if schedule_error:
        return Verdict("Ready", "False", INVALID_SCHEDULE, schedule_error)
    return None
