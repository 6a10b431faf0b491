"""TrainingJob: a training definition whose runs are Kubernetes Jobs.

Each run trains once and, if its result passes the registration gate, becomes a
ModelVersion. A run starts when the run-relevant spec changes, on `schedule`, on demand
(the `kiln.dev/run` annotation changes value) or on a drift trigger from an
InferenceService.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field

from kiln_operator.api.common import (
    Accelerator,
    ApiModel,
    Conditions,
    EnvList,
    LocalObjectReference,
    MetricMap,
    ModelName,
    NodeSelector,
    PodSecurity,
    ResourceRequirements,
    Sha256,
    StorageUri,
    Timestamp,
    Tolerations,
)
from kiln_operator.api.markers import Format, ListType, Pattern, Rule

#: A cron schedule: five fields (minute hour day-of-month month day-of-week) or a macro.
CronSchedule = Annotated[
    str,
    Field(min_length=1, max_length=128),
    Pattern(
        r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
        r"|([0-9A-Za-z*/,?#-]+ +){4}[0-9A-Za-z*/,?#-]+)$"
    ),
]

# Bounds of the status fields the operator fills from what runs report (pod messages,
# results, annotations). Declared once: the schema below uses them, and the operator fits
# what it writes to them, so a status write is never refused for its size.
MAX_RUNS: Final = 50
MAX_RUN_REASON: Final = 128
MAX_RUN_MESSAGE: Final = 4096
MAX_LOCATION: Final = 2048
MAX_RUN_REQUEST: Final = 256
MAX_HANDLED_RUN_REQUESTS: Final = 32
MAX_HYPERPARAMETERS: Final = 64
MAX_HYPERPARAMETER_VALUE: Final = 1024

Hyperparameters = Annotated[
    dict[str, Annotated[str, Field(max_length=MAX_HYPERPARAMETER_VALUE)]],
    Field(max_length=MAX_HYPERPARAMETERS),
]

RunTrigger = Literal["spec", "schedule", "manual", "drift"]
RunPhase = Literal["Pending", "Running", "Succeeded", "Failed"]


class Dataset(ApiModel):
    """The data a run trains on; passed to the container as `KILN_DATASET_URI`."""

    uri: StorageUri
    """Where the data lives (`pvc://`, `http(s)://` or `s3://`)."""
    version: Annotated[str, Field(max_length=128)] | None = None
    """A version label of the data set, recorded in each ModelVersion's lineage."""


class Output(ApiModel):
    """Where runs write their artifacts."""

    uri: StorageUri
    """A `pvc://<claim>/<path>` is mounted and each run gets its own subdirectory
    (`KILN_OUTPUT_DIR`); an `s3://` or `http(s)://` URI is passed to the code as
    `KILN_OUTPUT_URI` for it to write to."""


class Registration(ApiModel):
    """Whether and when a successful run becomes a ModelVersion."""

    enabled: bool = True
    """Register each successful run whose result passes the thresholds below."""
    min_metrics: MetricMap | None = None
    """Lower bounds: a run registers only if every named metric is at least this value
    (e.g. `accuracy: 0.9`). A metric missing from the result fails the gate."""
    max_metrics: MetricMap | None = None
    """Upper bounds, for metrics where lower is better (e.g. `loss: 0.3`)."""


class TrainingJobSpec(ApiModel):
    """What to train, how to run it, and when to start runs."""

    schema_rules = (
        Rule(
            "!has(self.timeZone) || has(self.schedule)",
            "timeZone requires schedule",
        ),
        Rule(
            "!has(self.startingDeadlineSeconds) || has(self.schedule)",
            "startingDeadlineSeconds requires schedule",
        ),
    )

    model: ModelName
    """The model this job trains; successful runs register ModelVersions named
    `<model>-v<n>`."""
    image: Annotated[str, Field(min_length=1, max_length=1024)]
    """The training container image."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """When to pull the image (the Kubernetes default when omitted)."""
    image_pull_secrets: (
        Annotated[list[LocalObjectReference], Field(max_length=16), ListType("map", ("name",))]
        | None
    ) = None
    """Secrets with registry credentials for pulling the image."""
    command: (
        Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] | None
    ) = None
    """The container's entrypoint (the image's when omitted)."""
    args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=256)] | None = (
        None
    )
    """Arguments to the entrypoint."""
    env: EnvList | None = None
    """Extra environment variables of the training container."""
    resources: ResourceRequirements | None = None
    """CPU and memory of each training pod. GPUs come from `accelerator`."""
    accelerator: Accelerator | None = None
    """GPUs for each training pod."""
    workers: Annotated[int, Field(ge=1, le=1024), Format("int32")] = 1
    """Number of training pods. Above 1 the run is an Indexed Job with a headless Service,
    and each pod gets the rank, world size and master address that torchrun and PyTorch
    DDP read (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`)."""
    master_port: Annotated[int, Field(ge=1024, le=65535), Format("int32")] = 29500
    """Port of the rank-0 worker for distributed rendezvous."""
    hyperparameters: Hyperparameters | None = None
    """Hyperparameters, passed as `KILN_HP_<NAME>` environment variables (the name
    upper-cased, other characters than letters and digits replaced by `_`) and recorded in each
    run and ModelVersion. Names that would share a variable (`lr` and `LR`) or have no letter
    or digit stop runs with the condition reason InvalidHyperparameters."""
    dataset: Dataset | None = None
    """The training data."""
    output: Output
    """Where runs write their artifacts."""
    backoff_limit: Annotated[int, Field(ge=0, le=100), Format("int32")] = 6
    """Retries of a failed pod before the run fails."""
    active_deadline_seconds: Annotated[int, Field(ge=1), Format("int64")] | None = None
    """Wall-clock limit of a run, after which it fails with DeadlineExceeded."""
    schedule: CronSchedule | None = None
    """Also start runs on this cron schedule (five fields, or @hourly, @daily...). The
    schedule adds runs: creating the TrainingJob and every change of the run-relevant spec
    still start a run at once, as without a schedule."""
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """IANA time zone the schedule is read in (UTC when omitted)."""
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Forbid"
    """What a scheduled start does while a run is still active: start another (Allow),
    skip this one (Forbid) or stop the active run and start anew (Replace)."""
    starting_deadline_seconds: Annotated[int, Field(ge=1), Format("int64")] | None = None
    """A scheduled run missed by more than this (operator down, suspended) is skipped;
    when omitted, the most recent missed run still starts."""
    suspend: bool = False
    """Start no new runs and suspend the active run's Job."""
    runs_history_limit: Annotated[int, Field(ge=1, le=MAX_RUNS), Format("int32")] = 5
    """How many runs to keep in status and as Jobs; older Jobs are deleted."""
    registration: Registration = Field(default_factory=Registration, alias="register")
    """Registration of successful runs as ModelVersions."""
    service_account_name: Annotated[str, Field(max_length=253)] | None = None
    """Service account of the training pods."""
    node_selector: NodeSelector | None = None
    """Extra node labels training pods must match (merged with the accelerator's)."""
    tolerations: Tolerations | None = None
    """Extra tolerations of the training pods."""
    priority_class_name: Annotated[str, Field(max_length=253)] | None = None
    """Priority class of the training pods."""
    security_context: PodSecurity | None = None
    """User and group the training processes run as."""


class RunArtifact(ApiModel):
    """The artifact a run produced, from its result."""

    uri: Annotated[str, Field(max_length=MAX_LOCATION)]
    """Where the artifact is (resolved against the run's output directory)."""
    sha256: Sha256
    """SHA-256 digest of the artifact."""


class Run(ApiModel):
    """One run of the TrainingJob."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    """The run's name, also its Job's name."""
    number: Annotated[int, Field(ge=1), Format("int64")] | None = None
    """The run's number: runs of a TrainingJob are numbered 1, 2, 3... in start order."""
    job: Annotated[str, Field(max_length=63)] | None = None
    """The batch/v1 Job executing the run."""
    trigger: RunTrigger
    """What started the run: a spec change, the schedule, the `kiln.dev/run` annotation
    (manual) or drift detected by an InferenceService."""
    phase: RunPhase
    """Where the run is: Pending, Running, Succeeded or Failed."""
    spec_hash: Annotated[str, Field(max_length=16)] | None = None
    """Short hash of the run-relevant spec the run was started from."""
    start_time: Timestamp | None = None
    """When the run started."""
    completion_time: Timestamp | None = None
    """When the run finished."""
    metrics: MetricMap | None = None
    """Metrics from the run's result."""
    artifact: RunArtifact | None = None
    """The artifact from the run's result."""
    baseline: Annotated[str, Field(max_length=MAX_LOCATION)] | None = None
    """Training-data statistics from the run's result, for drift detection."""
    hyperparameters: Hyperparameters | None = None
    """The hyperparameters the run was started with."""
    model_version: Annotated[str, Field(max_length=253)] | None = None
    """The ModelVersion the run registered."""
    run_request: Annotated[str, Field(max_length=63)] | None = None
    """The id of the run request it answers (`run-request.kiln.dev/<id>`): for a drift run,
    the id the InferenceService records in `status.drift.lastRetrainRequest`."""
    reason: Annotated[str, Field(max_length=MAX_RUN_REASON)] | None = None
    """Why the run ended as it did (e.g. BackoffLimitExceeded, InvalidResult, Registered)."""
    message: Annotated[str, Field(max_length=MAX_RUN_MESSAGE)] | None = None
    """Details of the outcome."""


class TrainingJobStatus(ApiModel):
    """What the operator observed and did."""

    observed_generation: Annotated[int, Format("int64")] | None = None
    """The `metadata.generation` last reconciled."""
    conditions: Conditions | None = None
    """`Ready`, `Running` and `Succeeded` (the latest run's outcome)."""
    phase: RunPhase | None = None
    """Phase of the latest run."""
    latest_run: Annotated[str, Field(max_length=63)] | None = None
    """Name of the latest run."""
    latest_model_version: Annotated[str, Field(max_length=253)] | None = None
    """The ModelVersion most recently registered by a run."""
    runs: Annotated[list[Run], Field(max_length=MAX_RUNS), ListType("map", ("name",))] | None = None
    """The most recent runs, oldest first (at most `runsHistoryLimit`)."""
    last_schedule_time: Timestamp | None = None
    """When the schedule last started (or skipped) a run."""
    next_schedule_time: Timestamp | None = None
    """When the schedule starts the next run (absent without a schedule or while suspended)."""
    handled_run_request: Annotated[str, Field(max_length=MAX_RUN_REQUEST)] | None = None
    """The last value of the `kiln.dev/run` annotation acted on (a longer value is recorded
    as a prefix and a digest)."""
    handled_run_requests: (
        Annotated[
            list[Annotated[str, Field(max_length=63)]],
            Field(max_length=MAX_HANDLED_RUN_REQUESTS),
        ]
        | None
    ) = None
    """Ids of the newest run requests handled (annotations `run-request.kiln.dev/<id>`),
    oldest first: a request whose id is here has had its run and starts no other."""
    observed_spec_generation: Annotated[int, Field(ge=0), Format("int64")] | None = None
    """The newest `metadata.generation` whose run-relevant spec a run already covers: edits
    up to it start no spec run, whatever a changed CRD default does to the stored spec."""


class TrainingJob(ApiModel):
    """A training definition whose runs are Kubernetes Jobs; each successful run that passes
    the registration gate becomes a ModelVersion with its metrics, digest and lineage."""

    spec: TrainingJobSpec
    """The desired training."""
    status: TrainingJobStatus | None = None
    """The observed state, written by the operator."""
