"""Names, labels and annotations of the objects Kiln creates, decided in one place.

A run's Job name carries the run number and a short hash of the run-relevant spec, so a
git edit of the spec starts a new run without ``Replace=true`` and a restarted operator
recomputes exactly the names it used before. Label values are capped at 63 characters
(a Kubernetes limit); names too long for that keep a prefix and gain a digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

GROUP: Final = "kiln.dev"

# -- labels ------------------------------------------------------------------------------
NAME_LABEL: Final = "app.kubernetes.io/name"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kiln"
TRAINING_JOB_LABEL: Final = "kiln.dev/trainingjob"
TRAINING_JOB_UID_LABEL: Final = "kiln.dev/trainingjob-uid"
RUN_LABEL: Final = "kiln.dev/run"
MODEL_LABEL: Final = "kiln.dev/model"
MODEL_VERSION_LABEL: Final = "kiln.dev/model-version"
#: On a ModelVersion's children (its validation Job and pods): the ModelVersion's name.
MODEL_VERSION_OWNER_LABEL: Final = "kiln.dev/modelversion"
#: On an InferenceService's children (Deployments, pods, Services, HPAs, the PDB, the
#: HTTPRoute): the InferenceService's name.
INFERENCE_SERVICE_LABEL: Final = "kiln.dev/inferenceservice"
#: On an InferenceService's Deployments (never their pod template, so that promotion
#: restarts nothing): ``stable`` or ``canary``.
TRACK_LABEL: Final = "kiln.dev/track"

# -- annotations ---------------------------------------------------------------------------
#: On a TrainingJob: changing its value asks for a run ("on demand").
RUN_REQUEST_ANNOTATION: Final = "kiln.dev/run"
#: On a run's Job and pods: the full TrainingJob name (labels may be truncated).
TRAINING_JOB_ANNOTATION: Final = "kiln.dev/trainingjob"
TRIGGER_ANNOTATION: Final = "kiln.dev/trigger"
RUN_NUMBER_ANNOTATION: Final = "kiln.dev/run-number"
SPEC_HASH_ANNOTATION: Final = "kiln.dev/spec-hash"
SCHEDULED_TIME_ANNOTATION: Final = "kiln.dev/scheduled-time"
REQUEST_VALUE_ANNOTATION: Final = "kiln.dev/run-request"
TRIGGER_MESSAGE_ANNOTATION: Final = "kiln.dev/trigger-message"
#: On a run's Job: the id of the API run request it answers (see decisions.requests).
REQUEST_ID_ANNOTATION: Final = "kiln.dev/request-id"
#: On a run's Job: the TrainingJob's metadata.generation the run was started for.
GENERATION_ANNOTATION: Final = "kiln.dev/generation"
#: On a run's Job: what the run was started with (image, dataset, hyperparameters, output).
LINEAGE_ANNOTATION: Final = "kiln.dev/lineage"

#: On a ModelVersion's validation Job and pods: the ModelVersion's full name.
MODEL_VERSION_ANNOTATION: Final = "kiln.dev/modelversion"
#: On a ModelVersion: who approved it, copied into ``status.approval.approvedBy``.
APPROVED_BY_ANNOTATION: Final = "kiln.dev/approved-by"

#: On an InferenceService's children and pods: the InferenceService's full name.
INFERENCE_SERVICE_ANNOTATION: Final = "kiln.dev/inferenceservice"

#: The training container's name in every run's pod.
TRAINER_CONTAINER: Final = "trainer"
#: The container of a ModelVersion's validation pod.
VALIDATOR_CONTAINER: Final = "validate"
#: The containers of a model-server pod: the model server, and the init container that
#: fetches the model.
SERVER_CONTAINER: Final = "kiln-server"
FETCH_CONTAINER: Final = "fetch"

MAX_LABEL_VALUE: Final = 63
#: Job names stay short enough that `<job>-<index>` pod hostnames of Indexed Jobs and the
#: Job controller's pod labels remain valid DNS labels.
MAX_JOB_NAME: Final = 52

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

#: Spec fields that change what a run computes. Schedule, suspend, history and registration
#: settings decide when runs start or what happens after; they never re-run training.
RUN_RELEVANT_FIELDS: Final = (
    "image",
    "imagePullPolicy",
    "imagePullSecrets",
    "command",
    "args",
    "env",
    "resources",
    "accelerator",
    "workers",
    "masterPort",
    "hyperparameters",
    "dataset",
    "output",
    "backoffLimit",
    "activeDeadlineSeconds",
    "serviceAccountName",
    "nodeSelector",
    "tolerations",
    "priorityClassName",
    "securityContext",
)


def digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def spec_hash(spec: dict[str, Any]) -> str:
    """Eight hex digits identifying the run-relevant part of a TrainingJob spec (wire form).

    Keys are sorted, so the same manifest always hashes the same, whoever serialised it.
    """
    relevant = {key: spec[key] for key in RUN_RELEVANT_FIELDS if spec.get(key) is not None}
    return digest(json.dumps(relevant, sort_keys=True, separators=(",", ":")))


def label_value(name: str) -> str:
    """``name`` as a label value: itself when it fits, else a prefix and a digest."""
    if len(name) <= MAX_LABEL_VALUE:
        return name
    return f"{name[: MAX_LABEL_VALUE - 9].rstrip('-.')}-{digest(name)}"


def run_name(training_job: str, number: int, spec_digest: str) -> str:
    """``<training job>-r<number>-<spec hash>``, shortened to :data:`MAX_JOB_NAME`."""
    suffix = f"-r{number}-{spec_digest}"
    base = training_job[: MAX_JOB_NAME - len(suffix)].rstrip("-.").replace(".", "-")
    return f"{base}{suffix}"


def service_name(job_name: str) -> str:
    """The headless Service of a distributed run: a DNS-1035 label (starts with a letter)."""
    return job_name if _DNS_LABEL.match(job_name) else f"r{job_name}"[:MAX_JOB_NAME]


def model_version_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def serving_deployment_name(inference_service: str, version: int) -> str:
    """``<inference service>-v<version>``: one Deployment per served ModelVersion."""
    return f"{inference_service}-v{version}"


def stable_service_name(inference_service: str) -> str:
    return f"{inference_service}-stable"


def canary_service_name(inference_service: str) -> str:
    return f"{inference_service}-canary"


def validation_job_name(model_version: str, key: str) -> str:
    """``<model version>-val-<key>``, shortened to :data:`MAX_JOB_NAME`: one Job per
    artifact (and baseline) a ModelVersion names."""
    suffix = f"-val-{key}"
    base = model_version[: MAX_JOB_NAME - len(suffix)].rstrip("-.").replace(".", "-")
    return f"{base}{suffix}"


def hyperparameter_env_name(name: str) -> str:
    """``KILN_HP_<NAME>``: upper-cased, other characters than letters and digits as ``_``."""
    return "KILN_HP_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
