"""Types shared by the three kinds: conditions, resources, storage URIs, quantities, env."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kiln_operator.api.markers import Format, IntOrString, ListType, Pattern, Rule


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, docstrings become descriptions."""

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    #: CEL rules on the object as a whole (cross-field constraints).
    schema_rules: ClassVar[tuple[Rule, ...]] = ()


#: RFC 1123 label: what Kubernetes accepts as a name of a Service, a label value's shape...
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

#: A model name: a DNS label short enough that `<model>-v<version>` stays a valid label.
ModelName = Annotated[str, Field(min_length=1, max_length=50), Pattern(DNS_LABEL)]

#: Object names (of a TrainingJob, a ModelVersion, a Secret...): an RFC 1123 subdomain.
ObjectName = Annotated[
    str,
    Field(min_length=1, max_length=253),
    Pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
]

#: Where artifacts and data live. `pvc://<claim>/<path>` is mounted into the pod,
#: `http(s)://` is fetched by an init container, `s3://<bucket>/<key>` is read with the
#: S3 API (any S3-compatible store).
StorageUri = Annotated[
    str,
    Field(min_length=7, max_length=2048),
    Pattern(
        r"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[^\s]*)?"
        r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?"
        r"|https?://[^\s/]+(/[^\s]*)?)$"
    ),
]

#: A SHA-256 digest as 64 lowercase hexadecimal characters.
Sha256 = Annotated[str, Field(min_length=64, max_length=64), Pattern(r"^[a-f0-9]{64}$")]

#: A duration such as `30s`, `5m`, `1h30m` or `250ms` (Go's time.ParseDuration units).
Duration = Annotated[
    str, Field(min_length=2, max_length=32), Pattern(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
]

#: A Kubernetes resource quantity (`500m`, `2Gi`, `1`).
Quantity = Annotated[
    int | str,
    IntOrString(),
    Pattern(
        r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
        r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
    ),
]

#: An RFC 3339 timestamp, as Kubernetes writes them (`2026-01-02T03:04:05Z`).
Timestamp = Annotated[str, Format("date-time")]

#: Metric values are plain numbers; names are short identifiers.
MetricName = Annotated[str, Field(min_length=1, max_length=63)]
MetricMap = Annotated[dict[str, float], Field(max_length=64)]


class Condition(ApiModel):
    """One aspect of the object's state, following the Kubernetes condition convention."""

    type: Annotated[
        str,
        Field(min_length=1, max_length=316),
        Pattern(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        ),
    ]
    """The aspect this condition describes, in CamelCase (`Ready`, `Running`...)."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds: True, False or Unknown."""
    reason: Annotated[str, Field(max_length=1024)] = ""
    """A CamelCase, machine-readable reason for the last transition."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """A human-readable explanation: what happened and, for failures, what to do."""
    observed_generation: Annotated[int, Field(ge=0), Format("int64")] = 0
    """The `metadata.generation` the condition was computed from."""
    last_transition_time: Timestamp | None = None
    """When the status last changed (kept when only reason or message change)."""


Conditions = Annotated[list[Condition], Field(max_length=32), ListType("map", ("type",))]


class Accelerator(ApiModel):
    """GPUs for each pod: a resource limit, a node selector and a toleration."""

    type: Annotated[str, Field(min_length=1, max_length=63), Pattern(DNS_LABEL)]
    """The accelerator type, a key of the operator's accelerator map (e.g. `nvidia-h100`);
    it selects nodes through the node selector configured for that type."""
    count: Annotated[int, Field(ge=1, le=16), Format("int32")] = 1
    """How many GPUs each pod gets (`nvidia.com/gpu` limit)."""


class ResourceRequirements(ApiModel):
    """Compute resources of the main container, as in a Pod spec."""

    limits: Annotated[dict[str, Quantity], Field(max_length=16)] | None = None
    """The most of each resource the container may use (e.g. `cpu: 2`, `memory: 4Gi`)."""
    requests: Annotated[dict[str, Quantity], Field(max_length=16)] | None = None
    """What the scheduler reserves for the container; defaults to the limits when omitted."""


class KeySelector(ApiModel):
    """Selects a key of a ConfigMap or Secret."""

    name: ObjectName
    """Name of the ConfigMap or Secret in the object's namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253)]
    """The key to read."""
    optional: bool | None = None
    """Whether the pod may start when the key or its object is missing."""


class FieldSelector(ApiModel):
    """Selects a field of the pod (downward API)."""

    field_path: Annotated[str, Field(min_length=1, max_length=256)]
    """Path of the field, e.g. `metadata.name` or `status.podIP`."""
    api_version: Annotated[str, Field(max_length=64)] | None = None
    """Version of the schema the path is written in (defaults to `v1`)."""


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from."""

    secret_key_ref: KeySelector | None = None
    """A key of a Secret."""
    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""
    field_ref: FieldSelector | None = None
    """A field of the pod."""


class EnvVar(ApiModel):
    """An environment variable of the main container."""

    schema_rules = (
        Rule(
            "!(has(self.value) && has(self.valueFrom))", "set either value or valueFrom, not both"
        ),
    )

    name: Annotated[
        str, Field(min_length=1, max_length=256), Pattern(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    ]
    """The variable's name."""
    value: Annotated[str, Field(max_length=32768)] | None = None
    """A literal value; `$(VAR)` references expand as in a Pod spec."""
    value_from: EnvVarSource | None = None
    """Read the value from a Secret, ConfigMap or the pod itself instead."""


EnvList = Annotated[list[EnvVar], Field(max_length=128), ListType("map", ("name",))]


class LocalObjectReference(ApiModel):
    """Names an object in the same namespace."""

    name: ObjectName
    """The object's name."""


class Toleration(ApiModel):
    """Lets pods schedule onto nodes with a matching taint."""

    key: Annotated[str, Field(max_length=316)] | None = None
    """The taint key the toleration applies to; empty with `Exists` matches every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """How the key and value are compared (defaults to `Equal`)."""
    value: Annotated[str, Field(max_length=63)] | None = None
    """The taint value to match with `Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect to match; empty matches all effects."""
    toleration_seconds: Annotated[int, Format("int64")] | None = None
    """For `NoExecute`, how long the pod stays bound after the taint appears."""


Tolerations = Annotated[list[Toleration], Field(max_length=32)]
NodeSelector = Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=32)]


class PodSecurity(ApiModel):
    """Identity the pod's processes run as. Kiln always runs pods non-root, without privilege
    escalation, with every capability dropped and the RuntimeDefault seccomp profile."""

    run_as_user: Annotated[int, Field(ge=1, le=2147483647), Format("int64")] | None = None
    """User ID of the container processes (the image's user when omitted; never 0)."""
    run_as_group: Annotated[int, Field(ge=0, le=2147483647), Format("int64")] | None = None
    """Primary group ID of the container processes."""
    fs_group: Annotated[int, Field(ge=0, le=2147483647), Format("int64")] | None = None
    """Group that owns mounted volumes, so a non-root process can write its output."""
