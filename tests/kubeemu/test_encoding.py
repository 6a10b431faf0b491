"""Built-in objects read back as the real API server's Go round trip leaves them.

Every expected string below is what kube-apiserver v1.28.7 answered for the same value in
a Pod's resources (probed by hand and in ``tests/cluster/reference/realk8s-answers.json``).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kubeemu.encoding import as_encoded, canonical_quantity


@pytest.mark.parametrize(
    ("written", "read_back"),
    [
        (2, "2"),
        (1.5, "1500m"),
        ("1.5", "1500m"),
        ("0.25", "250m"),
        ("100m", "100m"),
        ("2000m", "2"),
        ("1000000", "1M"),
        ("1000k", "1M"),
        ("100M", "100M"),
        ("1k", "1k"),
        (128974848, "128974848"),
        ("1024Mi", "1Gi"),
        ("1.0Gi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("1536Mi", "1536Mi"),
        ("1000Ki", "1000Ki"),
        ("0.5Mi", "512Ki"),
        ("1e3", "1e3"),
        ("1e6", "1e6"),
        ("1.5e9", "1500e6"),
        ("1E", "1E"),
    ],
)
def test_a_quantity_reads_back_in_canonical_form(written: Any, read_back: str) -> None:
    assert canonical_quantity(written) == read_back


def test_what_is_no_quantity_is_left_alone() -> None:
    assert canonical_quantity("lots") == "lots"
    assert canonical_quantity(True) is True


def test_a_jobs_zero_counts_vanish_and_ready_stays() -> None:
    job: dict[str, Any] = {
        "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"cpu": 1}}}]}}},
        "status": {"active": 0, "succeeded": 2, "failed": 0, "ready": 0},
    }
    as_encoded(("batch", "jobs"), job)
    assert job["status"] == {"succeeded": 2, "ready": 0}
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "1"}
