"""Playing the kubelet for model-server pods by really running them.

An InferenceService's Deployment names, in its pod template, an init container running
``kiln-server fetch`` and the ``kiln-server serve`` container. The stand-in runs exactly
those commands here (``python -m kiln_server``): the fetch with its ``pvc://`` claims under
a local folder standing for ``/mnt/pvc`` and its destination in a folder per pod, then the
server on its own loopback address (``127.0.0.N``, the container's port), which becomes
the pod's IP. So the operator scrapes real ``/metrics`` at the pod IP, and a test sends
real inference requests to the pods. Where no Deployment controller runs (the emulator,
envtest) the ReplicaSet, its pods and the Deployment's status are written as that
controller would; where one runs, the test waits for its pods and only plays the kubelet.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.kube import KubeClient, Obj
from tests.support.kubelet import (
    create_deployment_pods,
    set_deployment_available,
    set_pod_running,
)

#: Loopback addresses handed out as pod IPs, one per pod of the test session.
_ADDRESSES = (f"127.0.{n // 250}.{n % 250 + 2}" for n in itertools.count(40))
_ADDRESS_LOCK = threading.Lock()
START_TIMEOUT = 60.0


def _next_address() -> str:
    with _ADDRESS_LOCK:
        return next(_ADDRESSES)


def _replaced(args: Sequence[str], flag: str, value: str) -> list[str]:
    items = list(args)
    if flag in items:
        position = items.index(flag)
        return [*items[: position + 1], value, *items[position + 2 :]]
    return [*items, flag, value]


@dataclass
class RunningPod:
    """One model-server pod running here as a real process."""

    name: str
    uid: str
    version: int
    address: str
    port: int
    process: subprocess.Popen[bytes]
    log: Any
    model_dir: Path

    def post(self, path: str, body: Any, timeout: float = 10.0) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(self.address, self.port, timeout=timeout)
        try:
            connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            connection.close()

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.address, self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def output(self) -> str:
        self.log.seek(0)
        return str(self.log.read().decode(errors="replace"))


@dataclass
class ModelServers:
    """The model-server pods of one test, run here; stopped with :meth:`stop_all`."""

    client: KubeClient
    pvc_root: Path
    plays_deployment_controller: bool
    workdir: Path
    pods: dict[str, RunningPod] = field(default_factory=dict)

    def run_deployment(self, deployment: Obj, timeout: float = START_TIMEOUT) -> list[RunningPod]:
        """Run every pod of ``deployment`` (creating them where no controller does), mark
        them running and ready at their loopback address, and (without a controller) the
        Deployment available. Pods already running here are left as they are."""
        meta = deployment["metadata"]
        current = self.client.get("apps/v1", "Deployment", meta["name"], meta["namespace"])
        replicas = int(current["spec"].get("replicas", 1))
        pods = self._pods_of(current)
        if self.plays_deployment_controller and len(pods) < replicas:
            create_deployment_pods(self.client, current, replicas - len(pods))
        pods = self._wait_for_pods(current, replicas, timeout)
        started = [self._run_pod(pod) for pod in pods if pod["metadata"]["name"] not in self.pods]
        for running in started:
            self._wait_ready(running, timeout)
        for pod in pods:
            running = self.pods[pod["metadata"]["name"]]
            set_pod_running(self.client, pod, pod_ip=running.address)
        if self.plays_deployment_controller:
            set_deployment_available(self.client, current)
        else:
            self._wait_available(current, timeout)
        return [self.pods[p["metadata"]["name"]] for p in pods]

    def of_version(self, version: int) -> list[RunningPod]:
        return [pod for pod in self.pods.values() if pod.version == version]

    def stop_version(self, version: int) -> None:
        for name in [n for n, pod in self.pods.items() if pod.version == version]:
            self._stop(self.pods.pop(name))

    def stop_all(self) -> None:
        for pod in list(self.pods.values()):
            self._stop(pod)
        self.pods.clear()

    # -- the parts ---------------------------------------------------------------------------

    def _pods_of(self, deployment: Obj) -> list[Obj]:
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
        )
        items = self.client.list(
            "v1", "Pod", deployment["metadata"]["namespace"], label_selector=selector
        )["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def _wait_for_pods(self, deployment: Obj, count: int, timeout: float) -> list[Obj]:
        deadline = time.monotonic() + timeout
        while True:
            pods = self._pods_of(deployment)
            if len(pods) >= count:
                return sorted(pods, key=lambda p: p["metadata"]["name"])[:count]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{deployment['metadata']['name']}: {len(pods)} of {count} pods")
            time.sleep(0.1)

    def _wait_available(self, deployment: Obj, timeout: float) -> None:
        meta = deployment["metadata"]

        def available(current: Obj | None) -> bool:
            status = (current or {}).get("status") or {}
            wanted = int((current or {}).get("spec", {}).get("replicas", 1))
            return int(status.get("availableReplicas") or 0) >= wanted

        self.client.wait_for(
            "apps/v1",
            "Deployment",
            meta["name"],
            meta["namespace"],
            available,
            timeout=timeout,
            description="the Deployment controller to count the pods available",
        )

    def _run_pod(self, pod: Obj) -> RunningPod:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        model_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        for init in spec.get("initContainers") or []:
            args = _replaced(init["args"], "--pvc-root", str(self.pvc_root))
            args = _replaced(args, "--dest", str(model_dir))
            done = subprocess.run(
                [sys.executable, "-m", "kiln_server", *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{name}: init container {init['name']} failed: {done.stderr}")
        (server,) = [c for c in spec["containers"] if c["name"] == "kiln-server"]
        port = next(p["containerPort"] for p in server.get("ports") or [] if p["name"] == "http")
        address = _next_address()
        args = _replaced(server["args"], "--model-dir", str(model_dir))
        args = _replaced(args, "--host", address)
        environment = {**os.environ}
        for variable in server.get("env") or []:
            if "value" in variable:
                environment[variable["name"]] = str(variable["value"])
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _stop
        process = subprocess.Popen(
            [sys.executable, "-m", "kiln_server", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        version = int(pod["metadata"]["labels"]["kiln.dev/model-version"])
        running = RunningPod(
            name, pod["metadata"]["uid"], version, address, int(port), process, log, model_dir
        )
        self.pods[name] = running
        return running

    def _wait_ready(self, pod: RunningPod, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pod.process.poll() is not None:
                raise RuntimeError(f"{pod.name} exited: {pod.output()}")
            try:
                if pod.get("/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{pod.name} never became ready: {pod.output()}")

    def _stop(self, pod: RunningPod) -> None:
        if pod.process.poll() is None:
            pod.process.terminate()
            try:
                pod.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pod.process.kill()
                pod.process.wait()
        pod.log.close()


@dataclass
class Traffic:
    """Inference requests sent in the background to the pods of the stable and canary
    versions, in the proportion the InferenceService's status gives, with each answer
    recorded by version."""

    servers: ModelServers
    kube: KubeClient
    namespace: str
    name: str
    inputs: dict[int, Any]
    model: str = "iris"
    rate: float = 60.0
    codes: dict[int, list[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _split(self) -> tuple[int | None, int | None, int]:
        status = (
            self.kube.get("kiln.dev/v1alpha1", "InferenceService", self.name, self.namespace).get(
                "status"
            )
            or {}
        )
        stable = (status.get("serving") or {}).get("version")
        canary = status.get("canary") or {}
        return stable, canary.get("version"), int(canary.get("weight") or 0)

    def _run(self) -> None:
        sent = 0
        split = self._split()
        refreshed = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 0.5:
                split = self._split()
                refreshed = time.monotonic()
            stable, canary, weight = split
            version = target_version(sent, stable, canary, weight)
            sent += 1
            pods = self.servers.of_version(version) if version is not None else []
            if not pods:
                time.sleep(1.0 / self.rate)
                continue
            pod = pods[sent % len(pods)]
            try:
                body = self.inputs[version]
                code, _ = pod.post(
                    f"/v2/models/{self.model}/infer", body() if callable(body) else body
                )
            except OSError:
                code = 0
            self.codes.setdefault(int(version), []).append(code)
            time.sleep(1.0 / self.rate)


def target_version(sent: int, stable: int | None, canary: int | None, weight: int) -> int | None:
    """Which version request number ``sent`` goes to: of every 100 requests, ``weight`` go
    to the canary, spread evenly (a deterministic proportion, not a random one)."""
    if canary is not None and (sent * weight) // 100 != ((sent + 1) * weight) // 100:
        return canary
    return stable


def infer_body(features: int, value: float = 0.5, rows: int = 1) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [rows, features],
                "data": [value] * (rows * features),
            }
        ]
    }
