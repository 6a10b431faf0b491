"""The names other components rely on: metrics, labels, the termination message.

The operator scrapes ``/metrics`` of model-server pods to judge canaries (error rate from
``REQUESTS_TOTAL`` by ``code``, p99 from ``REQUEST_DURATION``) and reads the termination
message that ``kiln-server validate`` writes. It imports this module, so it must stay free of
onnxruntime, numpy and prometheus_client. Label sets here are stable: adding a label is a
breaking change for every consumer.

Metrics (all labelled ``model`` and ``version``; ``version`` is "" when none was given):

- ``kiln_inference_requests_total{model,version,code}`` counter: finished infer requests
  addressed to the served model, by HTTP status code as a string ("200", "400", "503", ...;
  "499" for a request whose client disconnected before its answer, nginx's convention);
  requests for another model or version (404) are not counted, so label values stay bounded.
- ``kiln_inference_request_duration_seconds{model,version}`` histogram: an infer request from
  its last body byte to its response being handed to the socket.
- ``kiln_inference_queue_duration_seconds{model,version}`` histogram: time a request waited in
  the batcher before its ONNX Runtime call started.
- ``kiln_inference_compute_duration_seconds{model,version}`` histogram: one ONNX Runtime call
  (one observation per batch, not per request).
- ``kiln_inference_batch_size{model,version}`` histogram: rows in each ONNX Runtime call.
- ``kiln_inference_requests_in_flight{model,version}`` gauge: infer requests being served.
- ``kiln_model_info{model,version,device,ready}`` gauge, always 1: what is loaded where;
  ``ready`` is "true" or "false".
- ``kiln_drift_psi{model,version,feature}`` gauge: population stability index of one input
  feature between the live window and ``baseline.json``.
- ``kiln_drift_psi_overall{model,version}`` gauge: the mean of the per-feature PSI values.
- ``kiln_drift_window_rows{model,version}`` gauge: live rows the PSI values are computed on.

Termination message of ``kiln-server validate`` (JSON, kept well under Kubernetes' 4 KiB;
tensor lists are truncated with ``"truncated": true`` if a model has very many):

    {"ok": true, "sha256": "<hex>", "sizeBytes": 1234, "opset": 17,
     "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 32]}],
     "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}]}

With ``--baseline-uri`` the success report also carries
``"baseline": {"input": "input", "features": 32}``. On failure it is
``{"ok": false, "reason": "<one of VALIDATION_REASONS>", "error": "<precise message>"}``;
the process then exits with :data:`VALIDATION_FAILED_EXIT_CODE`, so a Job's
``podFailurePolicy`` can tell a verdict (never worth retrying) from a crash.
"""

from __future__ import annotations

from typing import Final

REQUESTS_TOTAL: Final = "kiln_inference_requests_total"
REQUEST_DURATION: Final = "kiln_inference_request_duration_seconds"
QUEUE_DURATION: Final = "kiln_inference_queue_duration_seconds"
COMPUTE_DURATION: Final = "kiln_inference_compute_duration_seconds"
BATCH_SIZE: Final = "kiln_inference_batch_size"
IN_FLIGHT: Final = "kiln_inference_requests_in_flight"
MODEL_INFO: Final = "kiln_model_info"
DRIFT_PSI: Final = "kiln_drift_psi"
DRIFT_PSI_OVERALL: Final = "kiln_drift_psi_overall"
DRIFT_WINDOW_ROWS: Final = "kiln_drift_window_rows"

MODEL_LABELS: Final = ("model", "version")
REQUESTS_TOTAL_LABELS: Final = (*MODEL_LABELS, "code")
MODEL_INFO_LABELS: Final = (*MODEL_LABELS, "device", "ready")
DRIFT_PSI_LABELS: Final = (*MODEL_LABELS, "feature")

# Latency buckets (seconds) from 100 us to 10 s: fine enough at the low end for a fast
# server's p99, wide enough for a wide model under load.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

#: Why ``kiln-server validate`` refused an artifact (the ``reason`` of its failure report).
FETCH_FAILED: Final = "FetchFailed"
"""The artifact (or baseline) could not be fetched, after retries of transient failures."""
DIGEST_MISMATCH: Final = "DigestMismatch"
"""The bytes fetched are not the ones the sha256 names."""
NOT_ONNX: Final = "NotOnnx"
"""The file is not an ONNX model (not a ModelProto with a graph)."""
LOAD_FAILED: Final = "LoadFailed"
"""ONNX Runtime refused to load the model."""
INFERENCE_FAILED: Final = "InferenceFailed"
"""The model loads but one inference on zeros of its declared shapes fails."""
BASELINE_INVALID: Final = "BaselineInvalid"
"""``baseline.json`` is not valid ``kiln.baseline/v1`` or does not fit the model's input."""
VALIDATION_REASONS: Final = (
    FETCH_FAILED,
    DIGEST_MISMATCH,
    NOT_ONNX,
    LOAD_FAILED,
    INFERENCE_FAILED,
    BASELINE_INVALID,
)
#: Exit code of ``kiln-server validate`` when it reached a verdict against the artifact.
VALIDATION_FAILED_EXIT_CODE: Final = 3

TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT: Final = 4096
