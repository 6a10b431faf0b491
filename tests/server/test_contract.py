"""What other components import from the server works without its heavy dependencies:
the operator reads metric names and the termination-message shape, training scripts write
baseline.json, and neither has onnxruntime (or, for the operator, numpy) installed."""

from __future__ import annotations

import subprocess
import sys

BLOCK = "import sys\nfor name in {blocked}:\n    sys.modules[name] = None\n"


def run_with(blocked: list[str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK.format(blocked=blocked) + code],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_metric_contract_imports_without_onnxruntime_numpy_or_prometheus() -> None:
    result = run_with(
        ["onnxruntime", "numpy", "prometheus_client"],
        "from kiln_server import contract\n"
        "print(contract.REQUESTS_TOTAL, contract.REQUESTS_TOTAL_LABELS)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("kiln_inference_requests_total ('model', 'version', 'code')")


def test_write_baseline_works_without_onnxruntime(tmp_path: object) -> None:
    result = run_with(
        ["onnxruntime"],
        "import numpy as np\n"
        "from kiln_server.baseline import write_baseline, load_baseline\n"
        f"path = {str(tmp_path)!r} + '/baseline.json'\n"
        "write_baseline(np.random.default_rng(0).normal(size=(100, 3)), path)\n"
        "print(len(load_baseline(path).features))",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


def test_every_metric_the_server_exports_is_named_in_the_contract() -> None:
    from kiln_server import contract
    from kiln_server.metrics import ServerMetrics

    names = {
        getattr(contract, attribute)
        for attribute in dir(contract)
        if attribute.isupper() and attribute.startswith(("REQUEST", "QUEUE", "COMPUTE", "BATCH",
                                                         "IN_FLIGHT", "MODEL_INFO", "DRIFT"))
        and isinstance(getattr(contract, attribute), str)
    }  # fmt: skip
    exported = {family.name for family in ServerMetrics("m", "1", "cpu").registry.collect()}
    # prometheus_client drops the _total suffix from counter family names
    exported = {name + "_total" if name + "_total" in names else name for name in exported}
    drift_families = {contract.DRIFT_PSI, contract.DRIFT_PSI_OVERALL, contract.DRIFT_WINDOW_ROWS}
    assert exported == names - drift_families
