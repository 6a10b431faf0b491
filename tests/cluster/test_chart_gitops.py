"""GitOps-cleanliness: after the operator has worked on the examples, re-applying the same
manifests changes nothing the user wrote, so Argo CD shows them Synced.

The test applies ``examples/*.yaml`` the two ways Argo CD can sync (``kubectl apply``, its
default, and ``kubectl apply --server-side``, its ``ServerSideApply=true`` option), lets the
operator observe every object and start its children (a training run's Job, a
ModelVersion's validation Job), then asks the API server what applying the same files
again the same way would change (``kubectl diff``, ``kubectl diff --server-side``). Nothing
must differ: the operator writes only status and its own children. A changed manifest is
shown as a difference, so the check can fail.

(Mixing the two ways is not clean, on a real kube-apiserver or the emulator, operator or not:
``kubectl apply --server-side`` rewrites the last-applied annotation that a client-side apply
wrote to the configuration it applied (``reference/realk8s-answers.json``), so the next
client-side apply of the same files reports them "configured"; and a client-side apply after a
server-side one adds the annotation, which ``kubectl diff --server-side`` then shows.)
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.backends import REPO_ROOT, Cluster
from tests.support.kube import KubeClient, Obj
from tests.support.operator import OperatorProcess

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
KILN = "kiln.dev/v1alpha1"


def _kubectl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed: run `make helm`, which also installs it")
    return subprocess.run(
        [binary, "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _example_objects() -> list[Obj]:
    return [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]


def _observed(kube: KubeClient, namespace: str, obj: Obj) -> bool:
    live = kube.get(KILN, obj["kind"], obj["metadata"]["name"], namespace)
    status = live.get("status") or {}
    return bool(status.get("conditions")) and status.get("observedGeneration") == live[
        "metadata"
    ].get("generation")


def _operator_jobs(kube: KubeClient, namespace: str) -> list[Obj]:
    jobs: list[Obj] = kube.list("batch/v1", "Job", namespace)["items"]
    return jobs


@pytest.mark.parametrize("how", [(), ("--server-side",)], ids=["client-side", "server-side"])
def test_reapplying_the_examples_after_the_operator_worked_changes_nothing(
    cluster: Cluster,
    kiln_crds: list[str],
    namespace: str,
    operator: OperatorProcess,
    how: tuple[str, ...],
) -> None:
    assert EXAMPLES, "examples/*.yaml holds the manifests users start from"
    files = [arg for path in EXAMPLES for arg in ("-f", str(path))]
    applied = _kubectl(cluster, "apply", *how, "-n", namespace, *files)
    assert applied.returncode == 0, applied.stderr

    objects = _example_objects()
    kube = cluster.client
    deadline = time.monotonic() + 60
    while not (
        all(_observed(kube, namespace, obj) for obj in objects) and _operator_jobs(kube, namespace)
    ):
        assert time.monotonic() < deadline, "the operator did not observe every example"
        time.sleep(0.5)
    # One more resync's worth of work: the status settles, children are written.
    time.sleep(2)

    diff = _kubectl(cluster, "diff", *how, "-n", namespace, *files)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert diff.stdout == ""


def test_a_changed_manifest_is_a_difference(
    cluster: Cluster, kiln_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    # The diff above can fail: an edit of what the user wrote shows up.
    objects = _example_objects()
    applied = _kubectl(
        cluster, "apply", "-n", namespace, "-f", str(_write(tmp_path / "a.yaml", objects))
    )
    assert applied.returncode == 0, applied.stderr
    changed = [dict(obj) for obj in objects]
    training_job = next(obj for obj in changed if obj["kind"] == "TrainingJob")
    training_job["spec"] = {**training_job["spec"], "backoffLimit": 7}
    result = _kubectl(
        cluster, "diff", "-n", namespace, "-f", str(_write(tmp_path / "b.yaml", changed))
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "backoffLimit: 7" in result.stdout


def _write(path: Path, objects: list[Obj]) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path
