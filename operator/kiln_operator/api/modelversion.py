"""ModelVersion: one immutable, validated model artifact — an entry of the model registry.

The operator validates each ModelVersion with a Job that runs the model server in validate
mode (fetch, verify the digest, load with ONNX Runtime, run one inference) and records the
model's signature. ModelVersions outlive the TrainingJob that created them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kiln_operator.api.common import (
    ApiModel,
    Conditions,
    LocalObjectReference,
    MetricMap,
    MetricName,
    ModelName,
    Sha256,
    StorageUri,
    Timestamp,
)
from kiln_operator.api.markers import Format, Rule

ModelVersionPhase = Literal["Pending", "Validating", "Ready", "Failed"]


class Artifact(ApiModel):
    """The model file and its digest. Immutable once set."""

    uri: StorageUri
    """Where the model file is (`pvc://`, `http(s)://` or `s3://`)."""
    sha256: Sha256
    """SHA-256 digest of the file; every fetch verifies it."""
    format: Literal["onnx"] = "onnx"
    """Format of the artifact. Kiln serves ONNX."""


class Baseline(ApiModel):
    """Per-feature statistics of the training data; the model server compares live inputs with
    them to measure drift."""

    uri: StorageUri
    """Where the statistics file (`baseline.json`) is."""
    sha256: Sha256 | None = None
    """SHA-256 digest of the file, verified when given."""


class TrainingJobRef(ApiModel):
    """The TrainingJob a version came from."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """The TrainingJob's name."""
    uid: Annotated[str, Field(max_length=64)] | None = None
    """The TrainingJob's uid, telling apart jobs that reused a name."""


class DatasetRef(ApiModel):
    """The data a version was trained on."""

    uri: Annotated[str, Field(max_length=2048)]
    """Where the data was read from."""
    version: Annotated[str, Field(max_length=128)] | None = None
    """The data set's version label."""


class Lineage(ApiModel):
    """Where a version came from."""

    training_job: TrainingJobRef | None = None
    """The TrainingJob whose run produced the version."""
    run: Annotated[str, Field(max_length=63)] | None = None
    """The run that produced the version."""
    image: Annotated[str, Field(max_length=1024)] | None = None
    """The training image."""
    dataset: DatasetRef | None = None
    """The training data."""
    hyperparameters: (
        Annotated[dict[str, Annotated[str, Field(max_length=1024)]], Field(max_length=64)] | None
    ) = None
    """The hyperparameters of the run."""


class ModelVersionSpec(ApiModel):
    """A model artifact with its metrics and lineage."""

    model: Annotated[ModelName, Rule("self == oldSelf", "model is immutable")]
    """The model this is a version of."""
    version: Annotated[
        int,
        Field(ge=1, le=1000000),
        Format("int64"),
        Rule("self == oldSelf", "version is immutable"),
    ]
    """The version number, unique per model; immutable."""
    artifact: Annotated[Artifact, Rule("self == oldSelf", "artifact is immutable")]
    """The model file; immutable, so a version always means the same bytes."""
    baseline: Baseline | None = None
    """Training-data statistics for drift detection."""
    credentials: LocalObjectReference | None = None
    """A Secret in this namespace whose keys become the environment of every fetch of the
    artifact and baseline (validation and serving): `KILN_FETCH_AUTHORIZATION` is sent as
    the `Authorization` header of http(s) requests; `AWS_ACCESS_KEY_ID`,
    `AWS_SECRET_ACCESS_KEY` and `AWS_ENDPOINT_URL` serve s3."""
    metrics: MetricMap | None = None
    """Evaluation metrics of this version (e.g. `accuracy: 0.94`)."""
    key_metric: MetricName | None = None
    """The metric `kubectl get modelversions` shows (default: the first in name order)."""
    lineage: Lineage | None = None
    """Where the version came from."""
    approved: bool = False
    """Human approval, for InferenceServices whose selection policy requires it."""
    description: Annotated[str, Field(max_length=4096)] | None = None
    """Free-form notes about this version."""


class TensorSpec(ApiModel):
    """One input or output of the model."""

    name: Annotated[str, Field(max_length=256)]
    """The tensor's name."""
    datatype: Annotated[str, Field(max_length=16)]
    """Open Inference Protocol datatype (FP32, INT64, BYTES...)."""
    shape: Annotated[list[Annotated[int, Format("int64")]], Field(max_length=16)]
    """The shape; -1 marks a dynamic dimension."""


class Signature(ApiModel):
    """The model's inputs and outputs, as validation found them."""

    inputs: Annotated[list[TensorSpec], Field(max_length=64)]
    """The model's inputs."""
    outputs: Annotated[list[TensorSpec], Field(max_length=64)]
    """The model's outputs."""


class Approval(ApiModel):
    """Who set `spec.approved`, and when."""

    approved_by: Annotated[str, Field(max_length=253)]
    """The `kiln.dev/approved-by` annotation written with the approval, else the field
    manager that set `spec.approved` (e.g. `kubectl-patch`)."""
    field_manager: Annotated[str, Field(max_length=128)] | None = None
    """The field manager that owns `spec.approved`."""
    approved_at: Timestamp
    """When the approval was made (the managed-fields time of that write, else when the
    operator first saw it)."""


class ModelVersionStatus(ApiModel):
    """What validation found."""

    observed_generation: Annotated[int, Format("int64")] | None = None
    """The `metadata.generation` last reconciled."""
    conditions: Conditions | None = None
    """`Ready` and `Validated`."""
    phase: ModelVersionPhase | None = None
    """Pending, Validating, Ready or Failed."""
    signature: Signature | None = None
    """The model's inputs and outputs."""
    size_bytes: Annotated[int, Format("int64")] | None = None
    """Size of the artifact in bytes."""
    opset: Annotated[int, Format("int64")] | None = None
    """The model's ONNX opset (default domain)."""
    baseline_features: Annotated[int, Format("int64")] | None = None
    """Features of the baseline that validation checked against the model's input."""
    key_metric: Annotated[str, Field(max_length=128)] | None = None
    """The key metric and its value, e.g. `accuracy=0.94`."""
    approval: Approval | None = None
    """Who approved the version and when; absent while it is not approved."""
    validation_job: Annotated[str, Field(max_length=63)] | None = None
    """The Job that validated the artifact (named by a digest of what it checks, so each
    artifact and baseline is validated once)."""
    validated_at: Timestamp | None = None
    """When validation finished."""


class ModelVersion(ApiModel):
    """One immutable, validated model artifact: the model registry's entry, with its digest,
    metrics, lineage and approval."""

    spec: ModelVersionSpec
    """The version's artifact and facts."""
    status: ModelVersionStatus | None = None
    """The observed state, written by the operator."""
