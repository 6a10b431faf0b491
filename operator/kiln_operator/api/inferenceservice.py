"""InferenceService: serves a model and rolls new versions out progressively.

The spec says which version is desired (pinned, or selected by a policy); the status says
what is serving. A new version goes out as a canary through weighted steps, each analysed
from the model servers' metrics, and is promoted or rolled back automatically.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kiln_operator.api.common import (
    DNS_LABEL,
    Accelerator,
    ApiModel,
    Conditions,
    Duration,
    MetricMap,
    MetricName,
    ModelName,
    NodeSelector,
    ResourceRequirements,
    Timestamp,
    Tolerations,
)
from kiln_operator.api.markers import Format, ListType, Pattern, Rule


class MetricComparison(ApiModel):
    """A metric a candidate must beat the serving version on."""

    metric: MetricName
    """The metric's name, as recorded on ModelVersions."""
    better: Literal["higher", "lower"] = "higher"
    """Whether higher (accuracy) or lower (loss) values are better."""


class SelectionPolicy(ApiModel):
    """Follow the newest Ready version of the model that passes every rule here."""

    min_metrics: MetricMap | None = None
    """Lower bounds a version's metrics must meet (e.g. `accuracy: 0.9`)."""
    max_metrics: MetricMap | None = None
    """Upper bounds a version's metrics must meet (e.g. `latency_ms: 20`)."""
    require_approval: bool = False
    """Only versions with `spec.approved: true`."""
    must_beat_serving: (
        Annotated[list[MetricComparison], Field(max_length=16), ListType("map", ("metric",))] | None
    ) = None
    """Metrics on which a candidate must do strictly better than the serving version."""


class ModelRef(ApiModel):
    """Which version of which model to serve."""

    schema_rules = (
        Rule("!(has(self.version) && has(self.select))", "set either version or select, not both"),
        Rule("has(self.version) || has(self.select)", "set version (pin) or select (policy)"),
    )

    name: ModelName
    """The model's name (`spec.model` of its ModelVersions)."""
    version: Annotated[int, Field(ge=1, le=1000000), Format("int64")] | None = None
    """Serve exactly this version."""
    select: SelectionPolicy | None = None
    """Serve the newest version that passes this policy."""


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler for each served version."""

    schema_rules = (
        Rule("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas"),
    )

    min_replicas: Annotated[int, Field(ge=1, le=1000), Format("int32")] = 1
    """The fewest replicas."""
    max_replicas: Annotated[int, Field(ge=1, le=1000), Format("int32")]
    """The most replicas."""
    metric: Literal["cpu", "concurrency"] = "cpu"
    """Scale on CPU utilisation (percent of requests) or on in-flight requests per pod
    (needs a custom-metrics adapter serving `kiln_inference_requests_in_flight`)."""
    target: Annotated[int, Field(ge=1, le=10000), Format("int32")] = 70
    """The target value: a CPU percentage, or in-flight requests per pod."""


class Batching(ApiModel):
    """Server-side dynamic batching of concurrent requests."""

    max_batch_size: Annotated[int, Field(ge=1, le=4096), Format("int32")] = 64
    """The most rows one model call takes."""
    max_queue_delay_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    """How long a request may wait for others to join its batch. With 0, a model call takes
    whatever is queued when it starts, which under load already merges concurrent requests;
    a delay trades latency for fuller batches. An idle server never waits."""


class RolloutStep(ApiModel):
    """One step of a canary rollout."""

    weight: Annotated[int, Field(ge=1, le=100), Format("int32")]
    """Percentage of traffic the canary gets during this step."""
    duration: Duration | None = None
    """How long the step lasts before its analysis decides whether to go on (one analysis
    interval when omitted)."""


class Analysis(ApiModel):
    """How each step of a canary is judged, from the model servers' own metrics."""

    interval: Duration = "30s"
    """How often the canary's metrics are checked."""
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    """The highest share of failed (5xx) requests the canary may have."""
    max_latency_p99: Duration | None = None
    """The highest p99 request latency the canary may have (e.g. `250ms`)."""
    min_requests: Annotated[int, Field(ge=0, le=1000000), Format("int32")] = 50
    """Fewer canary requests in an interval make the analysis inconclusive, not passed."""
    failure_limit: Annotated[int, Field(ge=1, le=100), Format("int32")] = 1
    """Failed analyses that abort the rollout."""
    prometheus_url: Annotated[str, Field(max_length=2048), Pattern(r"^https?://[^\s]+$")] | None = (
        None
    )
    """Query this Prometheus instead of scraping the model servers directly."""


class GatewayRef(ApiModel):
    """The Gateway API Gateway the HTTPRoute attaches to."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """The Gateway's name."""
    namespace: Annotated[str, Field(max_length=63)] | None = None
    """The Gateway's namespace (the InferenceService's when omitted)."""
    section_name: Annotated[str, Field(max_length=253)] | None = None
    """A listener of the Gateway."""


def _default_steps() -> list[RolloutStep]:
    return [RolloutStep(weight=10, duration="1m"), RolloutStep(weight=50, duration="1m")]


_MAX_STEPS = 20
_STEP_INDICES = "[" + ", ".join(str(i) for i in range(_MAX_STEPS - 1)) + "]"


class Rollout(ApiModel):
    """How a new version replaces the serving one."""

    schema_rules = (
        Rule(
            # has(): the API server checks the rule against this object's default, `{}`,
            # before nested defaults fill trafficRouter in.
            "!has(self.trafficRouter) || self.trafficRouter != 'gatewayAPI' || has(self.gateway)",
            "trafficRouter gatewayAPI requires gateway",
        ),
    )

    strategy: Literal["Canary", "Immediate"] = "Canary"
    """Canary: shift traffic step by step with analysis; Immediate: switch at once."""
    steps: Annotated[
        list[RolloutStep],
        Field(min_length=1, max_length=_MAX_STEPS),
        Rule(
            # Pairs of neighbours by index over a literal list: the cost estimator knows its
            # size, where the size of a map() result is unknown (and so over any budget).
            f"{_STEP_INDICES}.all(i, i + 1 >= size(self) || self[i].weight < self[i + 1].weight)",
            "step weights must increase from step to step",
        ),
    ] = Field(default_factory=_default_steps)
    """The canary's traffic steps; after the last one the canary is promoted."""
    analysis: Analysis = Field(default_factory=Analysis)
    """How each step is judged."""
    traffic_router: Literal["service", "gatewayAPI"] = "service"
    """How traffic is split: by replica ratio behind one Service (approximate), or exactly
    by a Gateway API HTTPRoute."""
    gateway: GatewayRef | None = None
    """The Gateway for `trafficRouter: gatewayAPI`."""
    hostnames: (
        Annotated[list[Annotated[str, Field(max_length=253)]], Field(max_length=16)] | None
    ) = None
    """Hostnames of the HTTPRoute."""
    paused: bool = False
    """Hold the rollout at its current step."""


class Drift(ApiModel):
    """Detection of input drift against the training data's statistics."""

    threshold: Annotated[float, Field(gt=0, le=10)] = 0.2
    """Overall population stability index above which inputs count as drifted."""
    window: Annotated[int, Field(ge=100, le=1000000), Format("int32")] = 1000
    """How many recent input rows each model server compares with the baseline."""
    interval: Duration = "30s"
    """How often the operator reads the serving pods' drift gauges."""
    sustained_for: Duration = "2m"
    """How long inputs must stay drifted before a retraining run is requested (one noisy
    reading requests nothing)."""


class Retrain(ApiModel):
    """Start a TrainingJob run when drift is detected."""

    training_job: Annotated[str, Field(min_length=1, max_length=253), Pattern(DNS_LABEL)]
    """The TrainingJob (same namespace) to run."""
    cooldown: Duration = "1h"
    """The least time between two drift-triggered runs."""


class Monitoring(ApiModel):
    """Watching live traffic."""

    schema_rules = (Rule("!has(self.retrain) || has(self.drift)", "retrain requires drift"),)

    drift: Drift | None = None
    """Measure input drift."""
    retrain: Retrain | None = None
    """Retrain when drift is detected."""


class InferenceServiceSpec(ApiModel):
    """Which model to serve and how."""

    schema_rules = (
        Rule(
            "!(has(self.replicas) && has(self.autoscaling))",
            "set either replicas or autoscaling, not both",
        ),
    )

    model: ModelRef
    """The model, pinned to a version or selected by a policy."""
    replicas: Annotated[int, Field(ge=0, le=1000), Format("int32")] | None = None
    """A fixed number of model-server pods per served version (1 when neither this nor
    autoscaling is set)."""
    autoscaling: Autoscaling | None = None
    """Scale each served version with a HorizontalPodAutoscaler."""
    resources: ResourceRequirements | None = None
    """CPU and memory of each model-server pod."""
    accelerator: Accelerator | None = None
    """GPUs: the model server then runs ONNX Runtime's CUDA provider."""
    batching: Batching = Field(default_factory=Batching)
    """Server-side dynamic batching."""
    threads: Annotated[int, Field(ge=1, le=256), Format("int32")] | None = None
    """ONNX Runtime intra-op threads per pod (the pod's CPU limit when omitted)."""
    rollout: Rollout = Field(default_factory=Rollout)
    """How new versions go out."""
    monitoring: Monitoring | None = None
    """Drift detection and retraining."""
    node_selector: NodeSelector | None = None
    """Extra node labels model-server pods must match."""
    tolerations: Tolerations | None = None
    """Extra tolerations of the model-server pods."""
    service_account_name: Annotated[str, Field(max_length=253)] | None = None
    """Service account of the model-server pods."""


class ServingVersion(ApiModel):
    """The version taking stable traffic."""

    version: Annotated[int, Format("int64")]
    """The version number."""
    model_version: Annotated[str, Field(max_length=253)]
    """The ModelVersion's name."""
    since: Timestamp | None = None
    """When it became the stable version."""


class AnalysisRun(ApiModel):
    """One analysis of the canary."""

    time: Timestamp
    """When the analysis ran."""
    step: Annotated[int, Format("int32")]
    """The rollout step it judged (0-based)."""
    verdict: Literal["Passed", "Failed", "Inconclusive"]
    """The outcome."""
    requests: Annotated[int, Format("int64")] | None = None
    """Canary requests in the interval."""
    error_rate: float | None = None
    """Share of failed canary requests in the interval."""
    latency_p99_ms: float | None = None
    """Canary p99 latency in the interval, in milliseconds."""
    message: Annotated[str, Field(max_length=1024)] | None = None
    """Why."""


class PodCounters(ApiModel):
    """Cumulative counters of one canary pod, as scraped from its ``/metrics``."""

    requests: Annotated[int, Field(ge=0), Format("int64")]
    """Finished inference requests."""
    errors: Annotated[int, Field(ge=0), Format("int64")]
    """Of those, the ones answered with a 5xx code."""
    buckets: Annotated[list[Annotated[int, Format("int64")]], Field(max_length=32)]
    """Cumulative request-latency histogram counts, one per bucket of the server's
    `kiln_inference_request_duration_seconds`, then `+Inf`."""


class CanaryStatus(ApiModel):
    """The version being rolled out."""

    version: Annotated[int, Format("int64")]
    """The canary's version number."""
    model_version: Annotated[str, Field(max_length=253)]
    """The canary's ModelVersion."""
    weight: Annotated[int, Field(ge=0, le=100), Format("int32")]
    """Effective percentage of traffic the canary gets."""
    step: Annotated[int, Format("int32")]
    """Index of the current step."""
    step_started_at: Timestamp | None = None
    """When the current step began."""
    analysis: Annotated[list[AnalysisRun], Field(max_length=50)] | None = None
    """Recent analyses, oldest first."""
    samples: Annotated[dict[str, PodCounters], Field(max_length=256)] | None = None
    """Each canary pod's counters at the last analysis (or the step's start): the next
    analysis judges what happened since."""


class DriftStatus(ApiModel):
    """Measured input drift."""

    psi: float | None = None
    """Overall population stability index of recent inputs against the baseline (the mean
    over features, averaged over the serving pods weighted by the rows each observed)."""
    features: Annotated[dict[str, float], Field(max_length=256)] | None = None
    """PSI of the most drifted features (at most five)."""
    rows: Annotated[int, Format("int64")] | None = None
    """Live input rows the reading is computed on, over all serving pods."""
    drifted: bool | None = None
    """Whether inputs count as drifted: the PSI rose above the threshold and has not fallen
    below 80% of it since."""
    since: Timestamp | None = None
    """When inputs became drifted (while `drifted`)."""
    last_checked: Timestamp | None = None
    """When the reading shown was taken. Status is rewritten only when `drifted` flips or
    the PSI moves by 0.05 or more, so a steady service is not written every interval."""
    last_retrain: Timestamp | None = None
    """When drift last requested a retraining run."""
    last_retrain_request: Annotated[str, Field(max_length=63)] | None = None
    """The id of that run request (`run-request.kiln.dev/<id>` on the TrainingJob; the
    run's status row carries it)."""


class SkippedVersion(ApiModel):
    """A version newer than the desired one that the selection policy passed over."""

    version: Annotated[int, Format("int64")]
    """The version number."""
    model_version: Annotated[str, Field(max_length=253)]
    """The ModelVersion's name."""
    reason: Annotated[str, Field(max_length=1024)]
    """The rule it broke."""


class HistoryEntry(ApiModel):
    """A rollout event."""

    time: Timestamp
    """When it happened."""
    version: Annotated[int, Format("int64")]
    """The version concerned."""
    event: Literal["Deployed", "Promoted", "RolledBack", "Aborted"]
    """What happened."""
    reason: Annotated[str, Field(max_length=1024)] | None = None
    """Why."""


class InferenceServiceStatus(ApiModel):
    """What is serving."""

    observed_generation: Annotated[int, Format("int64")] | None = None
    """The `metadata.generation` last reconciled."""
    conditions: Conditions | None = None
    """`Ready` (a version serves), `Progressing` (a version is being deployed or rolled
    out), `Degraded` (the desired version cannot be served, or its rollout was aborted) and
    `Paused`."""
    desired_version: Annotated[int, Format("int64")] | None = None
    """The version the spec resolves to now."""
    serving: ServingVersion | None = None
    """The stable version."""
    canary: CanaryStatus | None = None
    """The version being rolled out, if any."""
    url: Annotated[str, Field(max_length=2048)] | None = None
    """Where to send inference requests (Open Inference Protocol v2)."""
    drift: DriftStatus | None = None
    """Input drift."""
    aborted_version: Annotated[int, Format("int64")] | None = None
    """A version whose rollout was aborted; it stays aborted until the spec changes or a
    newer version is desired."""
    aborted_generation: Annotated[int, Format("int64")] | None = None
    """The `metadata.generation` the rollout of `abortedVersion` was aborted under."""
    skipped: Annotated[list[SkippedVersion], Field(max_length=10)] | None = None
    """Versions newer than the desired one that the selection policy passed over, newest
    first, with the reason."""
    history: Annotated[list[HistoryEntry], Field(max_length=50)] | None = None
    """Recent rollout events, oldest first."""


class InferenceService(ApiModel):
    """Serves a ModelVersion with Kiln's ONNX Runtime model server, autoscales it, and rolls
    new versions out as canaries that are promoted or rolled back by automated analysis."""

    spec: InferenceServiceSpec
    """The desired serving."""
    status: InferenceServiceStatus | None = None
    """The observed state, written by the operator."""
