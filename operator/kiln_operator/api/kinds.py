"""The three kinds as the API server sees them: names, scope and printer columns."""

from __future__ import annotations

from dataclasses import dataclass

from kiln_operator.api.common import ApiModel
from kiln_operator.api.inferenceservice import InferenceService
from kiln_operator.api.modelversion import ModelVersion
from kiln_operator.api.trainingjob import TrainingJob

GROUP = "kiln.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "kiln"

READY_COLUMN_PATH = '.status.conditions[?(@.type=="Ready")].status'


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def as_schema(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


@dataclass(frozen=True)
class KindInfo:
    """Everything the CRD says about one kind besides its schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    model: type[ApiModel]
    columns: tuple[PrinterColumn, ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _ready() -> PrinterColumn:
    return PrinterColumn("Ready", "string", READY_COLUMN_PATH, "Whether the object is Ready")


def _age() -> PrinterColumn:
    return PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation")


TRAINING_JOB = KindInfo(
    kind="TrainingJob",
    plural="trainingjobs",
    singular="trainingjob",
    short_names=("tj",),
    model=TrainingJob,
    columns=(
        PrinterColumn("Model", "string", ".spec.model", "The model the runs produce"),
        PrinterColumn("Phase", "string", ".status.phase", "Phase of the latest run"),
        PrinterColumn(
            "Version",
            "string",
            ".status.latestModelVersion",
            "ModelVersion registered most recently",
        ),
        _ready(),
        PrinterColumn("Run", "string", ".status.latestRun", "The latest run", priority=1),
        PrinterColumn("Schedule", "string", ".spec.schedule", "Cron schedule", priority=1),
        _age(),
    ),
)

MODEL_VERSION = KindInfo(
    kind="ModelVersion",
    plural="modelversions",
    singular="modelversion",
    short_names=("mv",),
    model=ModelVersion,
    columns=(
        PrinterColumn("Model", "string", ".spec.model", "The model"),
        PrinterColumn("Version", "integer", ".spec.version", "The version number"),
        PrinterColumn("Phase", "string", ".status.phase", "Validation phase"),
        PrinterColumn("Approved", "boolean", ".spec.approved", "Human approval"),
        PrinterColumn("Metric", "string", ".status.keyMetric", "The key metric and its value"),
        _ready(),
        PrinterColumn(
            "Run", "string", ".spec.lineage.run", "The training run it came from", priority=1
        ),
        _age(),
    ),
)

INFERENCE_SERVICE = KindInfo(
    kind="InferenceService",
    plural="inferenceservices",
    singular="inferenceservice",
    short_names=("kis",),
    model=InferenceService,
    columns=(
        PrinterColumn("Model", "string", ".spec.model.name", "The model served"),
        PrinterColumn("Serving", "integer", ".status.serving.version", "Stable version"),
        PrinterColumn("Canary", "integer", ".status.canary.version", "Version being rolled out"),
        PrinterColumn("Weight", "integer", ".status.canary.weight", "Canary traffic percentage"),
        PrinterColumn("URL", "string", ".status.url", "Inference endpoint"),
        _ready(),
        _age(),
    ),
)

ALL_KINDS: tuple[KindInfo, ...] = (TRAINING_JOB, MODEL_VERSION, INFERENCE_SERVICE)
