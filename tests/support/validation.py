"""Playing the kubelet for a ModelVersion's validation pod by really running it.

The pod's container is ``kiln-server validate`` with the arguments the operator wrote; the
stand-in runs exactly that command here (``python -m kiln_server``), with the environment
of the Secret the container reads (``envFrom``), its ``pvc://`` claims resolved under a
local folder standing for ``/mnt/pvc``, and its termination message written to a file, then
reports the real exit code and message as the pod's status. Where no Job controller runs,
the Job is then finished as the real controller would (a verdict exit code matches the
``FailJob`` rule of its ``podFailurePolicy``).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kiln_server.contract import VALIDATION_FAILED_EXIT_CODE
from tests.support.kube import KubeClient, Obj
from tests.support.kubelet import (
    POD_FAILURE_POLICY,
    Workloads,
    set_job_status,
    set_pod_running,
    set_pod_terminated,
)

VALIDATE_TIMEOUT = 120.0


def _replaced(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with the value after ``flag`` set to ``value``."""
    position = args.index(flag)
    return [*args[: position + 1], value, *args[position + 2 :]]


def _secret_environment(client: KubeClient, container: Obj, namespace: str) -> dict[str, str]:
    environment: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        name = (source.get("secretRef") or {}).get("name")
        if name:
            secret = client.get("v1", "Secret", name, namespace)
            for key, value in (secret.get("data") or {}).items():
                environment[key] = base64.b64decode(value).decode()
    return environment


def run_validator(client: KubeClient, pod: Obj, pvc_root: Path) -> tuple[int, str]:
    """Run the pod's ``kiln-server validate`` here; its exit code and termination message."""
    (container,) = pod["spec"]["containers"]
    with tempfile.TemporaryDirectory(prefix="kiln-validation-pod-") as scratch:
        message_path = os.path.join(scratch, "termination-log")
        args = _replaced(list(container["args"]), "--pvc-root", str(pvc_root))
        args = _replaced(args, "--termination-message-path", message_path)
        environment = {
            **os.environ,
            **_secret_environment(client, container, pod["metadata"]["namespace"]),
            "TMPDIR": scratch,
        }
        done = subprocess.run(
            [sys.executable, "-m", "kiln_server", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT,
            check=False,
        )
        message = Path(message_path).read_text() if os.path.exists(message_path) else ""
    return done.returncode, message or done.stderr[-2000:]


def run_validation_job(
    client: KubeClient, workloads: Workloads, job: Obj, pvc_root: Path
) -> dict[str, Any]:
    """Run validation ``job``'s pod for real and report it; the pod's final status."""
    (pod,) = workloads.job_pods(job)
    set_pod_running(client, pod)
    if workloads.plays_job_controller:
        set_job_status(client, job, active=1)
    exit_code, message = run_validator(client, pod, pvc_root)
    finished = set_pod_terminated(client, pod, exit_code, message)
    if workloads.plays_job_controller:
        if exit_code == 0:
            set_job_status(client, job, succeeded=1, outcome="Complete")
        elif exit_code == VALIDATION_FAILED_EXIT_CODE:
            set_job_status(
                client, job, failed=1, outcome="Failed", failure_reason=POD_FAILURE_POLICY
            )
        else:
            set_job_status(client, job, failed=1, active=0)
    return finished
