"""The operator's deployment manifests render and run it the way a restricted namespace demands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln_operator.api.kinds import ALL_KINDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "operator" / "deploy")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def test_operator_runs_non_root_read_only_without_privileges(
    rendered: list[dict[str, Any]],
) -> None:
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_operator_may_manage_every_kiln_kind_and_its_status(
    rendered: list[dict[str, Any]],
) -> None:
    rules = _one(rendered, "ClusterRole")["rules"]
    granted = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for info in ALL_KINDS:
        assert ("kiln.dev", info.plural, "watch") in granted
        assert ("kiln.dev", f"{info.plural}/status", "patch") in granted
    assert ("batch", "jobs", "create") in granted


def test_everything_lands_in_the_operator_namespace(rendered: list[dict[str, Any]]) -> None:
    namespaced = [d for d in rendered if d["kind"] in {"ServiceAccount", "Deployment"}]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"kiln-system"}
    binding = _one(rendered, "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "kiln-system"
