"""Operator configuration: a broken accelerator map stops ``kiln-operator`` at start-up with
a message naming the file and the problem, before it touches any cluster."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "cannot read accelerator map", id="missing-file"),
        pytest.param(
            "nvidia-h100: [a, b]\n", "nvidia-h100: expected a non-empty mapping", id="list"
        ),
        pytest.param("a: {b: [\n", "is not valid YAML", id="broken-yaml"),
    ],
)
def test_a_broken_accelerator_map_stops_the_operator_with_a_clear_message(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "accelerators.yaml"
    if content is not None:
        path.write_text(content)
    command = shutil.which("kiln-operator")
    assert command is not None
    completed = subprocess.run(
        [
            command,
            "-n",
            "ml",
            "--metrics-port",
            "0",
            "--liveness-port",
            "0",
            "--accelerator-map",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(tmp_path / "absent"), "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 2
    assert expected in completed.stderr
    assert "Traceback" not in completed.stderr
