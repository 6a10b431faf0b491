"""kubectl, as users drive Kiln, works against the backend.

``kubectl apply -f crds/ -f examples/`` (client-side apply: discovery, OpenAPI validation,
the last-applied annotation, "unchanged" on a re-apply), ``kubectl get kiln`` (the
category and the printer columns), ``kubectl explain trainingjob.spec`` (descriptions from
the CRD schema), ``kubectl delete`` and ``kubectl wait`` (conditions and deletion).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import KILN_API, inference_service, model_version, training_job
from tests.support.backends import CRD_FOLDER, REPO_ROOT, Cluster
from tests.support.kube import KubeClient, Obj, load_manifests

EXAMPLES = REPO_ROOT / "examples"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.usefixtures("kiln_crds")


@pytest.fixture
def kubectl(cluster: Cluster) -> Kubectl:
    """Run kubectl with the backend's kubeconfig; fail the test on a non-zero exit."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed")

    def run(
        *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = [binary, "--kubeconfig", str(cluster.kubeconfig), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return run


def example_files() -> list[Path]:
    """Top-level example manifests (``kubectl apply -f examples/`` reads only these)."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def write_manifests(folder: Path, *objects: Obj) -> Path:
    path = folder / "kiln.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def kiln_objects() -> tuple[Obj, ...]:
    return (training_job("train"), model_version("iris-v1"), inference_service("serve"))


def test_apply_crds_and_examples(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    sources = ["-f", str(CRD_FOLDER)]
    if example_files():
        sources += ["-f", str(EXAMPLES)]
    else:
        sources += ["-f", str(write_manifests(tmp_path, *kiln_objects()))]
    first = kubectl("apply", "-n", namespace, *sources)
    assert "customresourcedefinition.apiextensions.k8s.io/trainingjobs.kiln.dev" in first.stdout
    again = kubectl("apply", "-n", namespace, *sources)
    lines = [line for line in again.stdout.splitlines() if line.strip()]
    assert lines, again.stdout
    assert all(line.endswith(" unchanged") for line in lines), again.stdout


def test_apply_again_after_an_edit_reports_configured(
    kubectl: Kubectl, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    job = training_job("train")
    kubectl("apply", "-n", namespace, "-f", str(write_manifests(tmp_path, job)))
    job["spec"]["image"] = "python:3.12-slim"
    result = kubectl("apply", "-n", namespace, "-f", str(write_manifests(tmp_path, job)))
    assert result.stdout.strip() == "trainingjob.kiln.dev/train configured"
    stored = kube.get(KILN_API, "TrainingJob", "train", namespace)
    assert stored["spec"]["image"] == "python:3.12-slim"
    assert stored["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]


def test_every_example_manifest_is_accepted(kubectl: Kubectl, namespace: str) -> None:
    files = example_files()
    assert files, "examples/ holds no manifests"
    documents = [doc for path in files for doc in load_manifests(path)]
    result = kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    assert len([line for line in result.stdout.splitlines() if line.strip()]) == len(documents)


def test_every_example_in_every_folder_passes_a_server_side_dry_run(
    kubectl: Kubectl, kube: KubeClient, namespace: str
) -> None:
    """What a user applies from any example folder (the quick start's volume claim, the
    training example) is admitted by the API server, and a dry run stores nothing."""
    files = sorted(p for p in EXAMPLES.rglob("*.y*ml") if load_manifests(p))
    assert len(files) > len(example_files()), "expected examples in subfolders too"
    for path in files:
        result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        assert lines, path
        assert all(line.endswith("(server dry run)") for line in lines), result.stdout
    assert kube.list(KILN_API, "TrainingJob", namespace)["items"] == []


def test_get_kiln_lists_all_three_kinds(kubectl: Kubectl, kube: KubeClient, namespace: str) -> None:
    kube.apply_manifest(list(kiln_objects()), namespace)
    names = kubectl("get", "kiln", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == [
        "inferenceservice.kiln.dev/serve",
        "modelversion.kiln.dev/iris-v1",
        "trainingjob.kiln.dev/train",
    ]
    (crd,) = load_manifests(CRD_FOLDER / "kiln.dev_trainingjobs.yaml")
    columns = [
        column["name"].upper()
        for column in crd["spec"]["versions"][0].get("additionalPrinterColumns", [])
        if not column.get("priority")
    ]
    table = kubectl("get", "trainingjobs", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", *columns]
    assert table[1].split()[0] == "train"
    short = kubectl("get", "tj,mv,kis", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(short) == sorted(names)


def test_explain_shows_the_schema_descriptions(kubectl: Kubectl) -> None:
    (crd,) = load_manifests(CRD_FOLDER / "kiln.dev_trainingjobs.yaml")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    result = kubectl("explain", "trainingjob.spec")
    text = " ".join(result.stdout.split())
    assert "FIELDS:" in result.stdout
    for field_name in ("model", "image", "output"):
        assert field_name in result.stdout
        description = " ".join(spec["properties"][field_name]["description"].split())
        assert description[:40] in text, field_name


def test_delete_removes_the_object(kubectl: Kubectl, kube: KubeClient, namespace: str) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    result = kubectl("delete", "-n", namespace, "trainingjob", "train")
    assert result.stdout.strip() == 'trainingjob.kiln.dev "train" deleted'
    assert kube.get_or_none(KILN_API, "TrainingJob", "train", namespace) is None
    missing = kubectl("get", "-n", namespace, "trainingjob", "train", check=False)
    assert missing.returncode == 1
    assert 'trainingjobs.kiln.dev "train" not found' in missing.stderr


def test_wait_for_the_crds_to_be_established(kubectl: Kubectl) -> None:
    result = kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", "crd/trainingjobs.kiln.dev"
    )
    assert (
        result.stdout.strip()
        == "customresourcedefinition.apiextensions.k8s.io/trainingjobs.kiln.dev condition met"
    )


def test_wait_for_a_condition_set_later(kubectl: Kubectl, kube: KubeClient, namespace: str) -> None:
    kube.apply_manifest([training_job("train")], namespace)

    def become_ready() -> None:
        time.sleep(1.0)
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "Test",
            "message": "set by the test",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
        kube.patch(
            KILN_API,
            "TrainingJob",
            "train",
            namespace,
            {"status": {"conditions": [ready]}},
            subresource="status",
        )

    writer = threading.Thread(target=become_ready)
    writer.start()
    result = kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "--timeout=30s", "trainingjob/train"
    )
    writer.join()
    assert result.stdout.strip() == "trainingjob.kiln.dev/train condition met"


def test_wait_for_deletion(kubectl: Kubectl, kube: KubeClient, namespace: str) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    deleter = threading.Timer(1.0, kube.delete, args=(KILN_API, "TrainingJob", "train", namespace))
    deleter.start()
    result = kubectl("wait", "-n", namespace, "--for=delete", "--timeout=30s", "trainingjob/train")
    deleter.join()
    assert result.returncode == 0


def test_wait_times_out_when_the_condition_never_comes(
    kubectl: Kubectl, kube: KubeClient, namespace: str
) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    result = kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "--timeout=2s",
        "trainingjob/train",
        check=False,
    )
    assert result.returncode != 0
    assert "timed out" in result.stderr


def test_describe_shows_the_object(kubectl: Kubectl, kube: KubeClient, namespace: str) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    result = kubectl("describe", "-n", namespace, "trainingjob", "train")
    assert re.search(r"^Name:\s+train$", result.stdout, re.MULTILINE)
    assert re.search(r"^Kind:\s+TrainingJob$", result.stdout, re.MULTILINE)
    assert "pvc://models/iris" in result.stdout


def test_annotate_requests_a_run_as_users_do(
    kubectl: Kubectl, kube: KubeClient, namespace: str
) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    kubectl("annotate", "-n", namespace, "trainingjob/train", "kiln.dev/run=first")
    kubectl("annotate", "-n", namespace, "--overwrite", "trainingjob/train", "kiln.dev/run=second")
    stored = kube.get(KILN_API, "TrainingJob", "train", namespace)
    assert stored["metadata"]["annotations"]["kiln.dev/run"] == "second"
    assert stored["metadata"]["generation"] == 1


def test_patch_with_a_merge_patch(kubectl: Kubectl, kube: KubeClient, namespace: str) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    kubectl(
        "patch", "-n", namespace, "tj", "train", "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    assert kube.get(KILN_API, "TrainingJob", "train", namespace)["spec"]["suspend"] is True


def test_server_side_apply_and_diff(
    kubectl: Kubectl, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    job = training_job("train")
    manifest = write_manifests(tmp_path, job)
    applied = kubectl("apply", "--server-side", "-n", namespace, "-f", str(manifest))
    assert applied.stdout.strip() == "trainingjob.kiln.dev/train serverside-applied"
    first = kube.get(KILN_API, "TrainingJob", "train", namespace)
    kubectl("apply", "--server-side", "-n", namespace, "-f", str(manifest))
    again = kube.get(KILN_API, "TrainingJob", "train", namespace)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert (
        kubectl(
            "diff", "--server-side", "-n", namespace, "-f", str(manifest), check=False
        ).returncode
        == 0
    )
    job["spec"]["image"] = "python:3.12-slim"
    changed = kubectl(
        "diff", "-n", namespace, "-f", str(write_manifests(tmp_path, job)), check=False
    )
    assert changed.returncode == 1, changed.stderr
    assert "+  image: python:3.12-slim" in changed.stdout


def test_api_resources_lists_the_kiln_kinds_with_short_names(kubectl: Kubectl) -> None:
    result = kubectl("api-resources", "--api-group=kiln.dev", "-o", "wide")
    rows = {
        line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line.strip()
    }
    assert set(rows) == {"inferenceservices", "modelversions", "trainingjobs"}
    assert rows["trainingjobs"][1:5] == ["tj", "kiln.dev/v1alpha1", "true", "TrainingJob"]
    assert rows["modelversions"][1] == "mv"
    assert rows["inferenceservices"][1] == "kis"
    assert all("kiln" in row[-1].split(",") for row in rows.values())
