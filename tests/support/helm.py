"""The real ``helm`` binary, for the chart's tests.

``make helm`` (``.ci/install-helm``) puts Helm v3 beside the virtual environment's
interpreter, and CI runs it before the tests; a developer may also have ``helm`` on PATH.
Tests that need it skip, saying how to install it, only where neither exists.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.tools import installed

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "kiln"
RELEASE = "kiln"
NAMESPACE = "kiln-system"


def require_helm() -> str:
    """The helm binary, or skip the test with the way to install it."""
    binary = installed("helm")
    if binary is None:
        pytest.skip("helm is not installed: run `make helm` (.ci/install-helm), as CI does")
    return binary


def run_helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    argv = [require_helm(), *args]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}\n{result.stdout}"
        )
    return result


def value_args(values: Mapping[str, Any] | None) -> list[str]:
    """Values as ``--set-json KEY=JSON``, one per top-level key (Helm merges each into the
    chart's defaults), so no values file needs writing."""
    return [
        arg
        for key, value in (values or {}).items()
        for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]


def template(
    values: Mapping[str, Any] | None = None,
    *extra: str,
    namespace: str = NAMESPACE,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        *value_args(values),
        *extra,
        check=check,
    )


def render(
    values: Mapping[str, Any] | None = None, *extra: str, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """The documents ``helm template`` renders with ``values``."""
    out = template(values, *extra, namespace=namespace).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def kinds(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(doc["kind"]) for doc in docs]
