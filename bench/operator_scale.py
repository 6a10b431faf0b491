"""Scale benchmark of the TrainingJob operator on a full, real control plane.

Not part of the test suite: it needs the control plane of ``../shared/realk8s`` (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler; ``RIG=/tmp/k8s
../shared/realk8s/up.sh``) and takes several minutes. It runs the real ``kiln-operator``
process (``python -m kiln_operator``) and judges it from the outside:

``burst``
    1,000 TrainingJobs are applied at once (server-side apply, as fast as the client can
    send them) into a fresh namespace the operator watches. Targets: every one has its child
    Job and a written status (``status.runs`` and ``status.conditions`` non-empty) within
    60 s of the apply finishing; the operator's RSS stays under 150 MB; once everything has
    settled (the run pods stay Pending: their node selector matches no node), 60 s pass with
    zero writes by the operator, counted in the API server's audit log for the operator's
    user identity; then a run request (the ``kiln.dev/run`` annotation) on one of them has
    its Job within 5 s, however deep the queue of periodic rechecks of the other 999.

``noise``
    5,000 unrelated Pods in 10 other namespaces (scheduling-gated, so they stay Pending
    without keeping the scheduler busy), the operator run with ``--all-namespaces`` through
    a recording reverse proxy, and one unrelated TrainingJob reconciled. Targets: the RSS
    stays under 150 MB, and every pods collection request the operator sends (list or watch)
    carries a label selector, so the API server never sends it the unrelated Pods.

Usage (from the repository root, in the project venv)::

    python bench/operator_scale.py [--rig /tmp/k8s] [--scenarios burst noise] [--repeats 2]

It prints one summary table (figure, target, PASS/MISS), writes every figure as JSON lines
to ``bench/results/raw/operator-scale-<stamp>.jsonl`` and exits 1 when a target is missed.
Everything it creates lives in namespaces labelled ``kiln-bench/scenario``, deleted at the
end of each run (and at the start, left over from an interrupted one). The CRDs of
``crds/`` are applied and left installed, because the test suites share them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import itertools
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

Obj = dict[str, Any]

REPO: Final = Path(__file__).resolve().parent.parent
KILN_API: Final = "kiln.dev/v1alpha1"
TRAININGJOBS: Final = "/apis/kiln.dev/v1alpha1/namespaces/{ns}/trainingjobs"
JOBS: Final = "/apis/batch/v1/namespaces/{ns}/jobs"
PODS: Final = "/api/v1/namespaces/{ns}/pods"
NAMESPACES: Final = "/api/v1/namespaces"
#: The label the operator puts on (and filters) its Jobs and pods.
TRAINING_JOB_LABEL: Final = "kiln.dev/trainingjob"
#: Marks every namespace this bench creates, so a later run can remove leftovers.
SCENARIO_LABEL: Final = "kiln-bench/scenario"
BENCH_AGENT: Final = "kiln-bench/operator-scale"
FIELD_MANAGER: Final = "kiln-bench"
#: User agents of the operator's two HTTP clients: Kiln's own (kube.py) and kopf's.
OPERATOR_AGENTS: Final = ("kiln-operator", "kopf/")
#: Matches no node, so no pod of the bench is ever bound (or run by a podlet node).
NO_NODE: Final = {"kiln-bench/no-such-node": "true"}
WRITE_VERBS: Final = ("create", "apply", "patch", "delete")
MB: Final = 1024 * 1024
#: Seconds a run request on a settled TrainingJob may wait for its Job, rechecks queued.
RUN_REQUEST_TARGET_S: Final = 5.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the API, from a kubeconfig --------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300]}")
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where an API server is and how to authenticate to it, from a kubeconfig."""

    server: str
    ssl_context: ssl.SSLContext | bool
    token: str | None = None


def load_endpoint(kubeconfig: Path, scratch: Path) -> Endpoint:
    """The current context of ``kubeconfig``; embedded certificates go to ``scratch``."""
    config = yaml.safe_load(kubeconfig.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"]) or {}

    def material(key: str, suffix: str) -> str | None:
        if f"{key}-data" in (source := cluster if key == "certificate-authority" else user):
            path = scratch / f"{context_name}.{suffix}"
            path.write_bytes(base64.b64decode(source[f"{key}-data"]))
            path.chmod(0o600)
            return str(path)
        return source.get(key)

    server = str(cluster["server"]).rstrip("/")
    context_ssl: ssl.SSLContext | bool = False
    if server.startswith("https://"):
        context_ssl = ssl.create_default_context(cafile=material("certificate-authority", "ca"))
        cert, key = material("client-certificate", "crt"), material("client-key", "key")
        if cert and key:
            context_ssl.load_cert_chain(cert, key)
    return Endpoint(server, context_ssl, user.get("token"))


class Api:
    """A small async client: JSON requests, server-side apply, resumable watches."""

    def __init__(self, endpoint: Endpoint, connections: int = 64) -> None:
        self.endpoint = endpoint
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=endpoint.ssl_context, limit=connections)
        )
        self._watches = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=endpoint.ssl_context, limit=0)
        )

    async def close(self) -> None:
        await self._session.close()
        await self._watches.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": BENCH_AGENT}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
        retries: int = 5,
    ) -> Obj:
        """One request; 429 and 5xx answers (an overloaded server) are retried."""
        url = self.endpoint.server + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(retries + 1):
            async with self._session.request(
                method,
                url,
                data=data,
                headers=self._headers(content_type if data else None),
                timeout=aiohttp.ClientTimeout(total=60),
            ) as answer:
                text = await answer.text()
                if answer.status < 300:
                    return dict(json.loads(text)) if text else {}
                if answer.status not in (429, 500, 502, 503, 504) or attempt == retries:
                    raise ApiError(method, path, answer.status, text)
            await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def get_or_none(self, path: str) -> Obj | None:
        try:
            return await self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def apply(self, collection: str, obj: Obj) -> Obj:
        """Server-side apply (create or update), as ``kubectl apply --server-side`` does."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        path = f"{collection}/{obj['metadata']['name']}"
        return await self.request("PATCH", path, query, obj, "application/apply-patch+yaml")

    async def list(self, collection: str, label_selector: str | None = None) -> Obj:
        query = {"labelSelector": label_selector} if label_selector else None
        return await self.request("GET", collection, query)

    async def watch(
        self, collection: str, resource_version: str, label_selector: str | None
    ) -> AsyncIterator[Obj]:
        """One watch request's events; ends when the server closes it."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "1"}
        if label_selector:
            query["labelSelector"] = label_selector
        url = f"{self.endpoint.server}{collection}?{urlencode(query)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
        async with self._watches.get(url, headers=self._headers(), timeout=timeout) as answer:
            if answer.status != 200:
                raise ApiError("WATCH", collection, answer.status, await answer.text())
            async for line in answer.content:
                if line.strip():
                    yield json.loads(line)

    async def follow(
        self,
        collection: str,
        on_event: Callable[[str, Obj], None],
        label_selector: str | None = None,
    ) -> None:
        """List, then watch from there, resuming where a closed watch stopped (forever)."""
        version: str | None = None
        while True:
            try:
                if version is None:
                    listing = await self.list(collection, label_selector)
                    for item in listing.get("items") or []:
                        on_event("ADDED", item)
                    version = listing["metadata"]["resourceVersion"]
                async for event in self.watch(collection, version, label_selector):
                    if event["type"] == "ERROR":
                        version = None  # 410 Gone: list again
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], event["object"])
            except (aiohttp.ClientError, TimeoutError, ApiError) as error:
                log(f"watch of {collection} broke ({error}); resuming")
                await asyncio.sleep(0.5)

    async def whoami(self) -> str:
        """The user name the API server authenticates this client as."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        answer = await self.request(
            "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review
        )
        return str(answer["status"]["userInfo"]["username"])

    async def text(self, path: str) -> str:
        """A plain-text endpoint such as /readyz; raises unless it answers 200."""
        async with self._session.get(
            self.endpoint.server + path, headers=self._headers()
        ) as answer:
            text = await answer.text()
            if answer.status != 200:
                raise ApiError("GET", path, answer.status, text)
            return text


async def bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run ``jobs`` with at most ``limit`` in flight; their results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return list(await asyncio.gather(*(one(job) for job in jobs)))


# -- namespaces and CRDs ---------------------------------------------------------------------------


async def install_crds(api: Api) -> None:
    """Apply ``crds/`` and wait until each CRD is Established."""
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        await api.apply("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        name = crd["metadata"]["name"]
        deadline = time.monotonic() + 60
        while True:
            got = await api.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = (got.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} is not Established after 60 s")
            await asyncio.sleep(0.5)


async def create_namespace(api: Api, name: str, scenario: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {SCENARIO_LABEL: scenario}},
    }
    await api.request("POST", NAMESPACES, body=body)


async def delete_namespaces(api: Api, names: Sequence[str], within: float = 300.0) -> float:
    """Delete ``names`` and wait until they are gone; returns the seconds it took."""
    began = time.monotonic()
    for name in names:
        with contextlib.suppress(ApiError):
            await api.request("DELETE", f"{NAMESPACES}/{name}")
    pending = list(names)
    while pending and time.monotonic() - began < within:
        await asyncio.sleep(1.0)
        for name in pending:
            # Pods bound to a kubelet-less node wait for a kubelet to confirm their end: the
            # bench, playing that kubelet, confirms it (podlet does the same).
            with contextlib.suppress(ApiError):
                await api.request("DELETE", PODS.format(ns=name), {"gracePeriodSeconds": "0"})
        pending = [n for n in pending if await api.get_or_none(f"{NAMESPACES}/{n}") is not None]
    if pending:
        log(f"namespaces still terminating after {within:.0f} s: {', '.join(pending)}")
    return time.monotonic() - began


async def remove_leftovers(api: Api) -> None:
    listing = await api.list(NAMESPACES, SCENARIO_LABEL)
    names = [ns["metadata"]["name"] for ns in listing.get("items") or []]
    if names:
        log(f"removing {len(names)} namespace(s) left by an earlier run")
        await delete_namespaces(api, names)


# -- the operator process and its memory -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM), None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS from a thread (the bench's event loop may be busy)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = proc_status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max((rss for _, rss in self.samples), default=0) / 1024

    def latest_mb(self) -> float:
        return self.samples[-1][1] / 1024 if self.samples else 0.0


class CpuMeter:
    """CPU seconds of the operator, the control plane's processes, the bench and the whole
    machine, per phase: where the time of a phase went (the rest is other users' load)."""

    RIG_PROCESSES: Final = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler")

    def __init__(self, operator_pid: int, rig: Path) -> None:
        self.pids = {"operator": operator_pid, "bench": os.getpid()}
        for name in self.RIG_PROCESSES:
            with contextlib.suppress(OSError, ValueError):
                self.pids[name] = int((rig / "run" / f"{name}.pid").read_text())
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.phases: list[tuple[str, float, dict[str, float]]] = [
            ("start", time.monotonic(), self._sample())
        ]

    def _sample(self) -> dict[str, float]:
        sample: dict[str, float] = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                sample[name] = (int(fields[11]) + int(fields[12])) / self.ticks
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        busy = sum(int(v) for i, v in enumerate(cpu[:8]) if i not in (3, 4))  # not idle, iowait
        sample["machine"] = busy / self.ticks
        return sample

    def phase(self, name: str) -> None:
        """End the current phase, calling it ``name``."""
        self.phases.append((name, time.monotonic(), self._sample()))

    def report(self) -> dict[str, dict[str, float]]:
        """Per phase: its wall seconds and the CPU seconds each process used in it."""
        out: dict[str, dict[str, float]] = {}
        for (_, began, first), (name, ended, last) in itertools.pairwise(self.phases):
            row = {"wall": round(ended - began, 1)}
            row.update({k: round(last[k] - first[k], 1) for k in last if k in first})
            out[name] = row
        return out


class Operator:
    """One ``python -m kiln_operator`` process with its metrics port and RSS sampler."""

    def __init__(
        self, kubeconfig: Path, scope: Sequence[str], log_path: Path, extra: Sequence[str]
    ) -> None:
        self.metrics_port = free_port()
        self.log_path = log_path
        argv = [
            sys.executable,
            "-m",
            "kiln_operator",
            *scope,
            "--liveness-port",
            "0",
            "--metrics-port",
            str(self.metrics_port),
            *extra,
        ]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        with log_path.open("wb") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.rss = RssSampler(self.process.pid)
        self.peak_hwm_kb = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    async def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as answer,
        ):
            return await answer.text()

    async def counters(self) -> OperatorCounters:
        return OperatorCounters.parse(await self.metrics())

    async def wait_ready(self, watched: Sequence[str], within: float = 60.0) -> None:
        """Until the operator's watches of ``watched`` resources are open."""
        deadline = time.monotonic() + within
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"kiln-operator exited early; see {self.log_path}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                counters = await self.counters()
                if all(counters.requests.get(("watch", r, "200"), 0) for r in watched):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"kiln-operator not watching within {within:.0f} s")
            await asyncio.sleep(0.2)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 30 s; the exit code."""
        self.peak_hwm_kb = proc_status_kb(self.pid, "VmHWM") or 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.rss.stop()
        return int(self.process.returncode)

    def log_problems(self) -> dict[str, int]:
        text = self.log_path.read_text(errors="replace")
        return {
            "tracebacks": text.count("Traceback (most recent call last)"),
            "reconcile_failures": text.count("reconcile failed"),
            "watch_failures": len(re.findall(r"watch of .* failed", text)),
        }


@dataclass(frozen=True)
class OperatorCounters:
    """The operator's own metrics that the bench reads."""

    requests: dict[tuple[str, str, str], float]
    reconciles: float
    queue_depth: float
    #: Of those, keys waiting with a change (the rest wait only for a recheck).
    changes_waiting: float

    @classmethod
    def parse(cls, text: str) -> OperatorCounters:
        requests: dict[tuple[str, str, str], float] = {}
        reconciles = depth = changes = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "kiln_operator_api_requests_total":
                    requests[(labels["verb"], labels["resource"], labels["code"])] = sample.value
                elif sample.name == "kiln_operator_reconciles_total":
                    reconciles += sample.value
                elif sample.name == "kiln_operator_workqueue_depth":
                    depth += sample.value
                    changes += sample.value if labels.get("lane") == "change" else 0.0
        return cls(requests, reconciles, depth, changes)

    @property
    def writes(self) -> float:
        return sum(n for (verb, _, _), n in self.requests.items() if verb in WRITE_VERBS)

    def by_verb(self) -> Counter[str]:
        verbs: Counter[str] = Counter()
        for (verb, _, _), n in self.requests.items():
            verbs[verb] += int(n)
        return verbs


# -- the audit log ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditMark:
    inode: int
    offset: int


class AuditLog:
    """The rig's audit log of writes (``audit-policy.yaml`` records writes only), read
    from a mark so that a window costs only what was logged since, rotation included."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> AuditMark:
        stat = self.path.stat()
        return AuditMark(stat.st_ino, stat.st_size)

    def entries_since(self, mark: AuditMark, since: float) -> Iterable[Obj]:
        for path in sorted(self.path.parent.glob(f"{self.path.stem}*{self.path.suffix}")):
            stat = path.stat()
            if stat.st_ino == mark.inode:
                offset = mark.offset
            elif stat.st_mtime >= since:
                offset = 0  # rotated in after the mark
            else:
                continue
            with path.open("rb") as lines:
                lines.seek(offset)
                for line in lines:
                    if line.strip():
                        yield json.loads(line)

    def writes(self, mark: AuditMark, since: float, until: float) -> list[Obj]:
        """Completed writes received in [since, until] (epoch seconds)."""
        found = []
        for entry in self.entries_since(mark, since):
            if entry.get("stage") != "ResponseComplete":
                continue
            received = datetime.fromisoformat(entry["requestReceivedTimestamp"]).timestamp()
            if since <= received <= until:
                found.append(entry)
        return found


def describe_write(entry: Obj) -> str:
    ref = entry.get("objectRef") or {}
    resource = ref.get("resource", "?") + (
        f"/{ref['subresource']}" if ref.get("subresource") else ""
    )
    return f"{entry['verb']} {resource}"


# -- a recording reverse proxy ---------------------------------------------------------------------


@dataclass
class ProxiedRequest:
    method: str
    path: str
    query: dict[str, str]
    user_agent: str
    at: float
    status: int = 0
    received_bytes: int = 0

    @property
    def verb(self) -> str:
        if self.method != "GET":
            return self.method.lower()
        return "watch" if self.query.get("watch") in ("true", "1") else "get"


_HOP_HEADERS: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
    }
)


class RecordingProxy:
    """Plain HTTP on loopback, forwarded over TLS with the bench's own credentials, so the
    operator's every request (method, path, query, answer size) is on record. Responses,
    watch streams included, are passed through as they arrive and never decompressed."""

    def __init__(self, upstream: Endpoint) -> None:
        self.upstream = upstream
        self.records: list[ProxiedRequest] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.upstream.ssl_context, limit=0),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * MB)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        # Upstream first: that ends the watch streams still being relayed, which the
        # server's shutdown would otherwise wait for.
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def write_kubeconfig(self, path: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "proxied", "user": {}}],
            "contexts": [{"name": "proxied", "context": {"cluster": "proxy", "user": "proxied"}}],
            "current-context": "proxied",
        }
        path.write_text(yaml.safe_dump(config))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        record = ProxiedRequest(
            method=request.method,
            path=request.path,
            query=dict(parse_qsl(request.query_string)),
            user_agent=request.headers.get("User-Agent", ""),
            at=time.monotonic(),
        )
        self.records.append(record)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        if self.upstream.token:
            headers["Authorization"] = f"Bearer {self.upstream.token}"
        body = await request.read()
        url = self.upstream.server + str(request.rel_url)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        async with self._session.request(
            request.method, url, data=body or None, headers=headers, timeout=timeout
        ) as upstream:
            record.status = upstream.status
            answer = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_HEADERS:
                    answer.headers[key] = value
            await answer.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    record.received_bytes += len(chunk)
                    await answer.write(chunk)
                await answer.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # the operator closed its end (a watch it stopped, or its exit)
            return answer


_PODS_COLLECTION: Final = re.compile(r"^/api/v1/(namespaces/[^/]+/)?pods$")


def is_pods_collection(record: ProxiedRequest) -> bool:
    return record.method == "GET" and bool(_PODS_COLLECTION.match(record.path))


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Check:
    scenario: str
    run: int
    target: str
    figure: str
    passed: bool


@dataclass
class RunReport:
    scenario: str
    run: int
    checks: list[Check] = field(default_factory=list)
    figures: Obj = field(default_factory=dict)

    def check(self, target: str, figure: str, passed: bool) -> None:
        self.checks.append(Check(self.scenario, self.run, target, figure, passed))
        log(f"{'PASS' if passed else 'MISS'}  {target}: {figure}")


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Options:
    rig: Path
    kubeconfig: Path
    objects: int
    pods: int
    services: int
    pod_namespaces: int
    deadline: float
    quiet: float
    rss_limit_mb: float
    clients: int
    operator_args: list[str]
    settle_timeout: float
    hold: float
    work: Path


async def finish_run(
    api: Api, operator: Operator, cpu: CpuMeter, namespace: str, report: RunReport
) -> None:
    """Stop the operator, record what it cost, and delete the run's namespace."""
    exit_code = operator.stop()
    report.figures.update(
        cpu_seconds=cpu.report(),
        rss_peak_mb=operator.rss.peak_mb,
        vm_hwm_mb=operator.peak_hwm_kb / 1024,
        exit_code=exit_code,
        log=str(operator.log_path),
        **operator.log_problems(),
    )
    report.figures["cleanup_s"] = await delete_namespaces(api, [namespace])


def check_rss(report: RunReport, scenario: str, operator: Operator, opts: Options) -> None:
    report.check(
        f"{scenario}: operator peak RSS < {opts.rss_limit_mb:.0f} MB",
        f"{operator.rss.peak_mb:.1f} MB sampled (VmHWM {operator.peak_hwm_kb / 1024:.1f} MB)",
        max(operator.rss.peak_mb, operator.peak_hwm_kb / 1024) < opts.rss_limit_mb,
    )


# -- scenario 1: a burst of TrainingJobs -----------------------------------------------------------


def training_job(name: str) -> Obj:
    return {
        "apiVersion": KILN_API,
        "kind": "TrainingJob",
        "metadata": {"name": name, "labels": {SCENARIO_LABEL: "burst"}},
        "spec": {
            "model": name,
            "image": "registry.invalid/kiln-bench/train:0",
            "output": {"uri": f"pvc://models/{name}"},
            "nodeSelector": NO_NODE,
        },
    }


def status_written(tj: Obj) -> bool:
    status = tj.get("status") or {}
    return bool(status.get("runs")) and bool(status.get("conditions"))


class BurstTracker:
    """When each TrainingJob first had a child Job and a written status (monotonic s)."""

    def __init__(self) -> None:
        self.job_at: dict[str, float] = {}
        self.status_at: dict[str, float] = {}
        self.tj_events = 0

    def on_training_job(self, _: str, tj: Obj) -> None:
        self.tj_events += 1
        name = tj["metadata"]["name"]
        if name not in self.status_at and status_written(tj):
            self.status_at[name] = time.monotonic()

    def on_job(self, _: str, job: Obj) -> None:
        for ref in job["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "TrainingJob" and ref["name"] not in self.job_at:
                self.job_at[ref["name"]] = time.monotonic()


async def pods_unschedulable(api: Api, namespace: str) -> tuple[int, int]:
    """(run pods, of which the scheduler has marked unschedulable)."""
    listing = await api.list(PODS.format(ns=namespace), TRAINING_JOB_LABEL)
    pods = listing.get("items") or []
    marked = sum(
        1
        for pod in pods
        if any(
            c["type"] == "PodScheduled" and c["status"] == "False"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
    )
    return len(pods), marked


async def jobs_started(api: Api, namespace: str) -> int:
    """Run Jobs whose status the Job controller has written (``status.startTime``)."""
    listing = await api.list(JOBS.format(ns=namespace), TRAINING_JOB_LABEL)
    jobs = listing.get("items") or []
    return sum(1 for job in jobs if (job.get("status") or {}).get("startTime"))


async def wait_for_settled(
    api: Api, operator: Operator, namespace: str, expected: int, opts: Options
) -> float:
    """Until every run pod exists and is marked unschedulable, the Job controller has
    written every Job's status (under load it lags the pods by tens of seconds, and a run's
    start time comes from it), no change waits in the operator's work queue and it has
    written nothing for 15 s; returns the seconds it took.

    Rechecks may wait: with a thousand active runs they keep the queue busy for good (the
    bench reports its depth)."""
    began = time.monotonic()
    last_writes, quiet_since = -1.0, time.monotonic()
    world_done = False
    next_report = 0.0
    while time.monotonic() - began < opts.settle_timeout:
        counters = await operator.counters()
        if counters.writes != last_writes:
            last_writes, quiet_since = counters.writes, time.monotonic()
        if time.monotonic() >= next_report:
            pods, marked = await pods_unschedulable(api, namespace)
            started = await jobs_started(api, namespace)
            world_done = marked >= expected and started >= expected
            next_report = time.monotonic() + 5
            log(
                f"settling: {pods} run pods, {marked} unschedulable, {started} Jobs started; "
                f"operator writes {counters.writes:.0f}, queue {counters.queue_depth:.0f} "
                f"({counters.changes_waiting:.0f} changes), RSS {operator.rss.latest_mb():.0f} MB"
            )
        if world_done and counters.changes_waiting == 0 and time.monotonic() - quiet_since >= 15:
            return time.monotonic() - began
        await asyncio.sleep(1.0)
    log(f"not settled after {opts.settle_timeout:.0f} s; measuring the quiet window anyway")
    return time.monotonic() - began


async def apply_burst(
    api: Api, operator: Operator, namespace: str, opts: Options, report: RunReport
) -> None:
    """Apply the TrainingJobs at once; time each one's first Job and written status."""
    tracker = BurstTracker()
    watchers = [
        asyncio.create_task(api.follow(TRAININGJOBS.format(ns=namespace), tracker.on_training_job)),
        asyncio.create_task(
            api.follow(JOBS.format(ns=namespace), tracker.on_job, TRAINING_JOB_LABEL)
        ),
    ]
    try:
        await asyncio.sleep(1.0)  # the bench's own watches are open
        applied_at: dict[str, float] = {}

        async def apply(name: str) -> None:
            await api.apply(TRAININGJOBS.format(ns=namespace), training_job(name))
            applied_at[name] = time.monotonic()

        log(f"applying {opts.objects} TrainingJobs ({opts.clients} concurrent requests)")
        began = time.monotonic()
        names = [f"tj-{index:04d}" for index in range(opts.objects)]
        await bounded(opts.clients, [functools.partial(apply, n) for n in names])
        applied = time.monotonic()
        apply_seconds = applied - began
        log(f"applied in {apply_seconds:.1f} s ({opts.objects / apply_seconds:.0f}/s)")
        give_up = applied + max(2 * opts.deadline, opts.deadline + 60)
        next_report = applied + 5
        while time.monotonic() < give_up and (
            len(tracker.job_at) < opts.objects or len(tracker.status_at) < opts.objects
        ):
            await asyncio.sleep(0.5)
            if time.monotonic() >= next_report:
                next_report += 5
                log(
                    f"+{time.monotonic() - applied:.0f} s: {len(tracker.job_at)} Jobs, "
                    f"{len(tracker.status_at)} statuses, RSS {operator.rss.latest_mb():.0f} MB"
                )
    finally:
        for task in watchers:
            task.cancel()
    jobs_done, statuses_done = len(tracker.job_at), len(tracker.status_at)
    last_job = max(tracker.job_at.values(), default=applied) - applied
    last_status = max(tracker.status_at.values(), default=applied) - applied
    job_latency = [tracker.job_at[n] - applied_at[n] for n in tracker.job_at]
    status_latency = [tracker.status_at[n] - applied_at[n] for n in tracker.status_at]
    counters = await operator.counters()
    report.figures.update(
        apply_seconds=apply_seconds,
        apply_rate=opts.objects / apply_seconds,
        jobs=jobs_done,
        statuses=statuses_done,
        last_job_after_apply_s=last_job,
        last_status_after_apply_s=last_status,
        job_latency_p50_s=percentile(job_latency, 0.5),
        job_latency_p95_s=percentile(job_latency, 0.95),
        status_latency_p50_s=percentile(status_latency, 0.5),
        status_latency_p95_s=percentile(status_latency, 0.95),
        tj_watch_events=tracker.tj_events,
        requests_until_all_done=dict(counters.by_verb()),
        reconciles_until_all_done=counters.reconciles,
    )
    report.check(
        f"{opts.objects} TrainingJobs: child Job within {opts.deadline:.0f} s of the apply",
        f"{jobs_done}/{opts.objects}, last at +{last_job:.1f} s "
        f"(per object p50 {percentile(job_latency, 0.5):.1f} s, "
        f"p95 {percentile(job_latency, 0.95):.1f} s; apply took {apply_seconds:.1f} s)",
        jobs_done == opts.objects and last_job <= opts.deadline,
    )
    report.check(
        f"{opts.objects} TrainingJobs: status written within {opts.deadline:.0f} s",
        f"{statuses_done}/{opts.objects}, last at +{last_status:.1f} s "
        f"(per object p50 {percentile(status_latency, 0.5):.1f} s, "
        f"p95 {percentile(status_latency, 0.95):.1f} s)",
        statuses_done == opts.objects and last_status <= opts.deadline,
    )


async def quiet_window(
    operator: Operator,
    audit: AuditLog,
    user: str,
    namespace: str,
    opts: Options,
    report: RunReport,
) -> None:
    """Count the operator's writes in the audit log over ``opts.quiet`` settled seconds."""
    mark = audit.mark()
    before = await operator.counters()
    since = time.time()
    log(f"quiet window: {opts.quiet:.0f} s")
    depths, changes = [], []
    while time.time() - since < opts.quiet:
        await asyncio.sleep(min(5.0, max(opts.quiet - (time.time() - since), 0.0)))
        sample = await operator.counters()
        depths.append(sample.queue_depth)
        changes.append(sample.changes_waiting)
    until = time.time()
    after = await operator.counters()
    await asyncio.sleep(2.0)  # the audit backend writes each event as it completes
    window = audit.writes(mark, since, until)
    by_user = [e for e in window if e["user"].get("username") == user]
    operator_writes = [e for e in by_user if e.get("userAgent", "").startswith(OPERATOR_AGENTS)]
    others_in_namespace = [
        e
        for e in window
        if e["user"].get("username") != user
        and (e.get("objectRef") or {}).get("namespace") == namespace
    ]
    report.figures.update(
        quiet_window_s=until - since,
        window_writes_by_user=len(by_user),
        window_writes_by_operator=len(operator_writes),
        window_operator_writes=dict(Counter(map(describe_write, operator_writes))),
        window_writes_of_user_by_agent=dict(Counter(e.get("userAgent", "") for e in by_user)),
        window_other_writes_in_namespace=dict(
            Counter(
                f"{e['user'].get('username', '?')} {describe_write(e)}" for e in others_in_namespace
            )
        ),
        window_reconciles=after.reconciles - before.reconciles,
        window_requests=dict(after.by_verb() - before.by_verb()),
        window_metric_writes=after.writes - before.writes,
        window_queue_depth=depths,
        window_changes_waiting=changes,
    )
    detail = ", ".join(f"{n} {w}" for w, n in Counter(map(describe_write, operator_writes)).items())
    report.check(
        f"settled: writes by the operator ({user}) in {opts.quiet:.0f} s (audit log)",
        f"{len(operator_writes)}{f' ({detail})' if detail else ''}; "
        f"{after.reconciles - before.reconciles:.0f} reconciles, "
        f"work queue depth {min(depths, default=0):.0f}-{max(depths, default=0):.0f} "
        f"(changes {min(changes, default=0):.0f}-{max(changes, default=0):.0f})",
        not operator_writes,
    )


async def run_request_reaction(api: Api, namespace: str, name: str, within: float) -> float | None:
    """Seconds from an on-demand run request (the ``kiln.dev/run`` annotation) on a settled
    TrainingJob to its second Job: how long a real change waits behind the work queue."""
    jobs = JOBS.format(ns=namespace)
    selector = f"{TRAINING_JOB_LABEL}={name}"
    before = len((await api.list(jobs, selector)).get("items") or [])
    patch = {"metadata": {"annotations": {"kiln.dev/run": f"bench-{time.time():.0f}"}}}
    began = time.monotonic()
    await api.request(
        "PATCH",
        f"{TRAININGJOBS.format(ns=namespace)}/{name}",
        body=patch,
        content_type="application/merge-patch+json",
    )
    while time.monotonic() - began < within:
        if len((await api.list(jobs, selector)).get("items") or []) > before:
            return time.monotonic() - began
        await asyncio.sleep(0.5)
    return None


async def list_cost(api: Api, namespace: str, name: str, repeats: int = 10) -> Obj:
    """Mean seconds of the label-selected lists one reconcile sends (pods and Jobs of one
    TrainingJob), as the operator sends them (a consistent read from etcd) and from the
    API server's watch cache (``resourceVersion=0``), in a namespace of many runs."""
    figures: Obj = {}
    selector = f"{TRAINING_JOB_LABEL}={name}"
    for kind, collection in (("pods", PODS), ("jobs", JOBS)):
        for mode, extra in (("etcd", {}), ("watch_cache", {"resourceVersion": "0"})):
            began = time.monotonic()
            for _ in range(repeats):
                await api.request(
                    "GET", collection.format(ns=namespace), {"labelSelector": selector, **extra}
                )
            figures[f"{kind}_{mode}_ms"] = (time.monotonic() - began) / repeats * 1000
    return figures


async def burst(api: Api, opts: Options, run: int, stamp: str, audit: AuditLog) -> RunReport:
    report = RunReport("burst", run)
    namespace = f"kiln-bench-burst-{stamp}-{run}"
    await create_namespace(api, namespace, "burst")
    user = await api.whoami()  # the operator runs with the same kubeconfig
    report.figures["operator_user"] = user
    audit_mark, started = audit.mark(), time.time()
    operator = Operator(
        opts.kubeconfig,
        ["--namespace", namespace],
        opts.work / f"operator-burst-{run}.log",
        opts.operator_args,
    )
    cpu = CpuMeter(operator.pid, opts.rig)
    try:
        await operator.wait_ready(["trainingjobs", "jobs", "pods"])
        report.figures["rss_ready_mb"] = operator.rss.latest_mb()
        cpu.phase("ready")
        await apply_burst(api, operator, namespace, opts, report)
        cpu.phase("burst")
        report.figures["settle_s"] = await wait_for_settled(
            api, operator, namespace, opts.objects, opts
        )
        cpu.phase("settle")
        await quiet_window(operator, audit, user, namespace, opts, report)
        cpu.phase("quiet")
        writes = audit.writes(audit_mark, started, time.time())
        report.figures["operator_writes_whole_run"] = dict(
            Counter(
                describe_write(e)
                for e in writes
                if e["user"].get("username") == user
                and e.get("userAgent", "").startswith(OPERATOR_AGENTS)
            )
        )
        probe = f"tj-{opts.objects // 2:04d}"
        report.figures["list_cost"] = await list_cost(api, namespace, probe)
        reaction = await run_request_reaction(api, namespace, probe, 180.0)
        report.figures["run_request_reaction_s"] = reaction
        log(f"steady state: list cost {report.figures['list_cost']}")
        report.check(
            f"settled, {opts.objects} active runs: a run request's Job "
            f"(≤ {RUN_REQUEST_TARGET_S:.0f} s)",
            f"{reaction:.1f} s" if reaction is not None else "more than 180 s",
            reaction is not None and reaction <= RUN_REQUEST_TARGET_S,
        )
    finally:
        await finish_run(api, operator, cpu, namespace, report)
    check_rss(report, "burst", operator, opts)
    return report


# -- scenario 2: thousands of unrelated pods -------------------------------------------------------


def noise_pod(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "kiln-bench-noise"}},
        "spec": {
            # Gated: the scheduler leaves it alone, so it stays Pending at no cost.
            "schedulingGates": [{"name": "kiln-bench/never"}],
            "nodeSelector": NO_NODE,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.invalid/kiln-bench/noise:0",
                    "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}},
                }
            ],
        },
    }


def summarize_pods_requests(records: Sequence[ProxiedRequest]) -> Obj:
    pods = [r for r in records if is_pods_collection(r)]
    return {
        "pods_requests": len(pods),
        "pods_requests_by_verb_scope_selector": dict(
            Counter(
                f"{r.verb} {'all namespaces' if r.path == '/api/v1/pods' else 'one namespace'} "
                f"labelSelector={r.query.get('labelSelector', '<none>')}"
                for r in pods
            )
        ),
        "pods_without_selector": [
            f"{r.method} {r.path}?{urlencode(r.query)}"
            for r in pods
            if not r.query.get("labelSelector")
        ],
        "pods_bytes_received": sum(r.received_bytes for r in pods),
    }


async def noise(api: Api, opts: Options, run: int, stamp: str) -> RunReport:
    report = RunReport("noise", run)
    per_namespace = opts.pods // opts.pod_namespaces
    noise_namespaces = [f"kiln-bench-noise-{stamp}-{run}-{i}" for i in range(opts.pod_namespaces)]
    target_namespace = f"kiln-bench-unrelated-{stamp}-{run}"
    created = [*noise_namespaces, target_namespace]
    proxy = RecordingProxy(api.endpoint)
    operator: Operator | None = None
    cpu: CpuMeter | None = None
    try:
        for name in created:
            await create_namespace(api, name, "noise")
        log(
            f"creating {per_namespace * len(noise_namespaces)} pods "
            f"in {len(noise_namespaces)} namespaces"
        )
        began = time.monotonic()
        await bounded(
            opts.clients,
            [
                functools.partial(
                    api.request, "POST", PODS.format(ns=ns), body=noise_pod(f"noise-{i:04d}")
                )
                for ns in noise_namespaces
                for i in range(per_namespace)
            ],
        )
        report.figures["pods_created"] = per_namespace * len(noise_namespaces)
        report.figures["pods_create_s"] = time.monotonic() - began
        log(f"pods created in {report.figures['pods_create_s']:.1f} s")

        await proxy.start()
        kubeconfig = opts.work / f"proxy-{run}.kubeconfig"
        proxy.write_kubeconfig(kubeconfig)
        operator = Operator(
            kubeconfig,
            ["--all-namespaces"],
            opts.work / f"operator-noise-{run}.log",
            opts.operator_args,
        )
        cpu = CpuMeter(operator.pid, opts.rig)
        await operator.wait_ready(["trainingjobs", "jobs", "pods"])
        report.figures["rss_ready_mb"] = operator.rss.latest_mb()
        cpu.phase("ready")
        startup_records = len(proxy.records)

        name = "unrelated"
        manifest = training_job(name)
        manifest["metadata"]["labels"][SCENARIO_LABEL] = "noise"
        applied = time.monotonic()
        await api.apply(TRAININGJOBS.format(ns=target_namespace), manifest)
        reconciled: float | None = None
        while time.monotonic() - applied < 60:
            tj = await api.get_or_none(f"{TRAININGJOBS.format(ns=target_namespace)}/{name}")
            if tj is not None and status_written(tj):
                reconciled = time.monotonic() - applied
                break
            await asyncio.sleep(0.5)
        report.figures["unrelated_status_s"] = reconciled
        log(f"holding {opts.hold:.0f} s to sample memory after the reconcile")
        await asyncio.sleep(opts.hold)
        cpu.phase("reconcile")
        counters = await operator.counters()
        report.figures["operator_requests"] = dict(counters.by_verb())
    finally:
        if operator is not None:
            exit_code = operator.stop()
            report.figures.update(
                cpu_seconds=cpu.report() if cpu is not None else {},
                exit_code=exit_code,
                rss_peak_mb=operator.rss.peak_mb,
                vm_hwm_mb=operator.peak_hwm_kb / 1024,
                log=str(operator.log_path),
                **operator.log_problems(),
            )
        await proxy.stop()
        report.figures["cleanup_s"] = await delete_namespaces(api, created)

    assert operator is not None
    records = proxy.records
    kiln_records = [r for r in records if r.user_agent.startswith("kiln-operator")]
    noise_paths = [
        r.path for r in records if any(f"/namespaces/{ns}/" in r.path for ns in noise_namespaces)
    ]
    report.figures.update(
        proxied_requests=len(records),
        proxied_by_agent=dict(Counter(r.user_agent.split(" ")[0] for r in records)),
        proxied_kiln_requests=len(kiln_records),
        proxied_bytes=sum(r.received_bytes for r in records),
        requests_into_noise_namespaces=len(noise_paths),
        startup=summarize_pods_requests(records[:startup_records]),
        reconcile=summarize_pods_requests(records[startup_records:]),
        **summarize_pods_requests(records),
    )
    pods = [r for r in records if is_pods_collection(r)]
    unfiltered = [r for r in pods if not r.query.get("labelSelector")]
    after_tj = [r for r in records[startup_records:] if is_pods_collection(r)]
    report.check(
        "noise: every pods list/watch the operator sends carries a label selector",
        f"{len(pods)} pods requests ({len(after_tj)} after the TrainingJob), "
        f"{len(unfiltered)} without a selector; "
        f"selectors {sorted({r.query.get('labelSelector', '') for r in pods})}; "
        f"{report.figures['pods_bytes_received']:,} bytes of pods answers; "
        f"{len(noise_paths)} requests into the noise namespaces",
        bool(pods) and bool(after_tj) and not unfiltered and not noise_paths,
    )
    status_s = report.figures["unrelated_status_s"]
    report.check(
        "noise: the unrelated TrainingJob is reconciled (status written)",
        f"after {status_s:.1f} s" if status_s is not None else "not within 60 s",
        status_s is not None,
    )
    hwm_mb = operator.peak_hwm_kb / 1024
    report.check(
        f"noise: operator peak RSS < {opts.rss_limit_mb:.0f} MB with "
        f"{report.figures['pods_created']} unrelated pods",
        f"{operator.rss.peak_mb:.1f} MB sampled (VmHWM {hwm_mb:.1f} MB; "
        f"{report.figures['rss_ready_mb']:.1f} MB once watching)",
        max(operator.rss.peak_mb, hwm_mb) < opts.rss_limit_mb,
    )
    return report


# -- scenario 3: many InferenceServices ------------------------------------------------------------

INFERENCESERVICES: Final = "/apis/kiln.dev/v1alpha1/namespaces/{ns}/inferenceservices"
MODELVERSIONS: Final = "/apis/kiln.dev/v1alpha1/namespaces/{ns}/modelversions"
DEPLOYMENTS: Final = "/apis/apps/v1/namespaces/{ns}/deployments"
INFERENCE_SERVICE_LABEL: Final = "kiln.dev/inferenceservice"
#: Label of the kubelet-less nodes the bench registers for the serving pods (it plays their
#: kubelet); each takes 100 pods (a node's default limit is 110).
BENCH_NODE_LABEL: Final = "kiln-bench/node"
PODS_PER_BENCH_NODE: Final = 100
BENCH_SHA256: Final = "0" * 64


def bench_model_version(namespace: str) -> tuple[Obj, Obj]:
    """ModelVersion iris-v1 and the status its validation would have written: the bench
    stands in for the validation pod (what it measures is serving), so the status names the
    exact Job the operator would create and the operator treats the verdict as recorded."""
    from kiln_operator import naming
    from kiln_operator.api.modelversion import ModelVersionSpec
    from kiln_operator.decisions.validation import validation_key

    spec = {
        "model": "iris",
        "version": 1,
        "artifact": {"uri": "https://models.invalid/iris/v1/model.onnx", "sha256": BENCH_SHA256},
        "metrics": {"accuracy": 0.95},
    }
    job = naming.validation_job_name(
        "iris-v1", validation_key(ModelVersionSpec.model_validate(spec))
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def condition(type_: str) -> Obj:
        return {"type": type_, "status": "True", "reason": "Validated", "message": "bench",
                "observedGeneration": 1, "lastTransitionTime": now}  # fmt: skip

    status = {
        "phase": "Ready",
        "observedGeneration": 1,
        "validationJob": job,
        "validatedAt": now,
        "conditions": [condition("Validated"), condition("Ready")],
    }
    body = {
        "apiVersion": KILN_API,
        "kind": "ModelVersion",
        "metadata": {"name": "iris-v1", "labels": {"kiln.dev/model": "iris"}},
        "spec": spec,
    }
    return body, status


def bench_inference_service(name: str) -> Obj:
    return {
        "apiVersion": KILN_API,
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": {SCENARIO_LABEL: "serving"}},
        "spec": {
            "model": {"name": "iris", "version": 1},
            "replicas": 1,
            "nodeSelector": {BENCH_NODE_LABEL: "true"},
        },
    }


def served(isvc: Obj) -> bool:
    status = isvc.get("status") or {}
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )
    return ready and (status.get("serving") or {}).get("version") == 1


async def ensure_bench_nodes(api: Api, pods: int) -> list[str]:
    """Register enough kubelet-less Ready nodes (labelled ``BENCH_NODE_LABEL``) for ``pods``
    pods. They are left registered: nothing runs there, and the next run reuses them."""
    names = [f"kiln-bench-node-{i + 1}" for i in range(-(-pods // PODS_PER_BENCH_NODE))]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resources = {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    for name in names:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {BENCH_NODE_LABEL: "true", "kubernetes.io/hostname": name},
            },
        }
        await api.apply("/api/v1/nodes", node)
        status = {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet-less bench node", "lastHeartbeatTime": now,
                 "lastTransitionTime": now}
            ],
        }  # fmt: skip
        await api.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )
    return names


class Kubelet:
    """Marks each bound serving pod Running and Ready, as the node's kubelet would once the
    model server answered its readiness probe (nothing runs: no InferenceService here rolls
    out, so nobody scrapes the pods)."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.done: set[str] = set()
        self.queue: asyncio.Queue[Obj] = asyncio.Queue()

    def on_pod(self, _: str, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        if pod["spec"].get("nodeName") and name not in self.done:
            self.done.add(name)
            self.queue.put_nowait(pod)

    async def work(self) -> None:
        while True:
            pod = await self.queue.get()
            name = pod["metadata"]["name"]
            path = f"{PODS.format(ns=self.namespace)}/{name}/status"
            for _ in range(5):
                current = await self.api.request("GET", path)
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                index = len(self.done)
                current["status"] = {
                    "phase": "Running",
                    "podIP": f"10.250.{index // 250}.{index % 250 + 1}",
                    "hostIP": "10.0.0.10",
                    "startTime": now,
                    "conditions": [
                        {"type": t, "status": "True", "lastTransitionTime": now}
                        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                    ],
                    "containerStatuses": [
                        {"name": c["name"], "image": c["image"], "imageID": "", "ready": True,
                         "started": True, "restartCount": 0,
                         "state": {"running": {"startedAt": now}}}
                        for c in current["spec"]["containers"]
                    ],
                }  # fmt: skip
                try:
                    await self.api.request("PUT", path, body=current)
                    break
                except ApiError as error:
                    if error.status != 409:
                        raise


async def serving(api: Api, opts: Options, run: int, stamp: str, audit: AuditLog) -> RunReport:
    report = RunReport("serving", run)
    namespace = f"kiln-bench-serving-{stamp}-{run}"
    count = opts.services
    await create_namespace(api, namespace, "serving")
    user = await api.whoami()
    report.figures["bench_nodes"] = await ensure_bench_nodes(api, count)
    mv, mv_status = bench_model_version(namespace)
    created = await api.apply(MODELVERSIONS.format(ns=namespace), mv)
    created["status"] = mv_status
    await api.request("PUT", f"{MODELVERSIONS.format(ns=namespace)}/iris-v1/status", body=created)
    kubelet = Kubelet(api, namespace)
    served_at: dict[str, float] = {}

    def on_isvc(_: str, isvc: Obj) -> None:
        name = isvc["metadata"]["name"]
        if name not in served_at and served(isvc):
            served_at[name] = time.monotonic()

    tasks = [
        asyncio.create_task(
            api.follow(PODS.format(ns=namespace), kubelet.on_pod, INFERENCE_SERVICE_LABEL)
        ),
        asyncio.create_task(api.follow(INFERENCESERVICES.format(ns=namespace), on_isvc)),
        *(asyncio.create_task(kubelet.work()) for _ in range(8)),
    ]
    operator = Operator(
        opts.kubeconfig,
        ["--namespace", namespace, "--model-server-image", "kiln-server:bench"],
        opts.work / f"operator-serving-{run}.log",
        opts.operator_args,
    )
    cpu = CpuMeter(operator.pid, opts.rig)
    try:
        await operator.wait_ready(["inferenceservices", "deployments", "modelversions"])
        report.figures["rss_ready_mb"] = operator.rss.latest_mb()
        cpu.phase("ready")
        await asyncio.sleep(1.0)
        applied_at: dict[str, float] = {}

        async def apply(name: str) -> None:
            await api.apply(INFERENCESERVICES.format(ns=namespace), bench_inference_service(name))
            applied_at[name] = time.monotonic()

        log(f"applying {count} InferenceServices")
        began = time.monotonic()
        names = [f"kis-{index:04d}" for index in range(count)]
        await bounded(opts.clients, [functools.partial(apply, n) for n in names])
        applied = time.monotonic()
        log(f"applied in {applied - began:.1f} s")
        give_up = applied + max(2 * opts.deadline, opts.deadline + 60)
        next_report = applied + 5
        while time.monotonic() < give_up and len(served_at) < count:
            await asyncio.sleep(0.5)
            if time.monotonic() >= next_report:
                next_report += 5
                log(
                    f"+{time.monotonic() - applied:.0f} s: {len(kubelet.done)} pods running, "
                    f"{len(served_at)} serving, RSS {operator.rss.latest_mb():.0f} MB"
                )
        cpu.phase("converge")
        latency = [served_at[n] - applied_at[n] for n in served_at]
        last = max(served_at.values(), default=applied) - applied
        report.figures.update(
            services=count,
            apply_seconds=applied - began,
            served=len(served_at),
            last_served_after_apply_s=last,
            served_latency_p50_s=percentile(latency, 0.5),
            served_latency_p95_s=percentile(latency, 0.95),
        )
        report.check(
            f"{count} InferenceServices: serving (Ready, status.serving) within "
            f"{opts.deadline:.0f} s of the apply",
            f"{len(served_at)}/{count}, last at +{last:.1f} s (per object p50 "
            f"{percentile(latency, 0.5):.1f} s, p95 {percentile(latency, 0.95):.1f} s; "
            f"apply took {applied - began:.1f} s)",
            len(served_at) == count and last <= opts.deadline,
        )
        # Settled: nothing rolls out; the operator's writes must stop.
        quiet_since, last_writes = time.monotonic(), -1.0
        while time.monotonic() - quiet_since < 15 and time.monotonic() < give_up + 60:
            writes = (await operator.counters()).writes
            if writes != last_writes:
                last_writes, quiet_since = writes, time.monotonic()
            await asyncio.sleep(1.0)
        cpu.phase("settle")
        await quiet_window(operator, audit, user, namespace, opts, report)
        cpu.phase("quiet")
    finally:
        for task in tasks:
            task.cancel()
        await finish_run(api, operator, cpu, namespace, report)
    check_rss(report, "serving", operator, opts)
    return report


# -- driver ----------------------------------------------------------------------------------------


def print_summary(reports: Sequence[RunReport], loads: Mapping[str, float]) -> None:
    print("\n## kiln-operator scale bench\n")
    print("| scenario | run | load avg at start | target | figure | verdict |")
    print("|---|---:|---:|---|---|---|")
    for report in reports:
        load = loads.get(f"{report.scenario}-{report.run}", float("nan"))
        for check in report.checks:
            verdict = "PASS" if check.passed else "**MISS**"
            print(
                f"| {check.scenario} | {check.run} | {load:.2f} | {check.target} | "
                f"{check.figure} | {verdict} |"
            )
    missed = sum(not c.passed for r in reports for c in r.checks)
    total = sum(len(r.checks) for r in reports)
    print(f"\n{total - missed} of {total} checks passed" + (f", {missed} MISSED" if missed else ""))


async def main_async(opts: Options, scenarios: Sequence[str], repeats: int) -> int:
    opts.work.mkdir(parents=True, exist_ok=True)
    scratch = opts.work / "credentials"
    scratch.mkdir(exist_ok=True, mode=0o700)
    api = Api(load_endpoint(opts.kubeconfig, scratch), connections=max(opts.clients, 8))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = REPO / "bench" / "results" / "raw" / f"operator-scale-{stamp}.jsonl"
    results.parent.mkdir(parents=True, exist_ok=True)
    reports: list[RunReport] = []
    loads: dict[str, float] = {}
    try:
        await api.text("/readyz")
        await remove_leftovers(api)
        await install_crds(api)
        audit = AuditLog(opts.rig / "logs" / "audit.log")
        with results.open("a") as out:
            out.write(
                json.dumps({"kind": "meta", "stamp": stamp, **_machine(), **_source()}) + "\n"
            )
            for run in range(1, repeats + 1):
                for scenario in scenarios:
                    loads[f"{scenario}-{run}"] = os.getloadavg()[0]
                    log(f"=== {scenario} run {run} (load average {os.getloadavg()[0]:.2f})")
                    if scenario == "burst":
                        report = await burst(api, opts, run, stamp.lower(), audit)
                    elif scenario == "serving":
                        report = await serving(api, opts, run, stamp.lower(), audit)
                    else:
                        report = await noise(api, opts, run, stamp.lower())
                    report.figures["loadavg_start"] = loads[f"{scenario}-{run}"]
                    reports.append(report)
                    out.write(
                        json.dumps(
                            {
                                "kind": "run",
                                "scenario": scenario,
                                "run": run,
                                "figures": report.figures,
                                "checks": [asdict(c) for c in report.checks],
                            },
                            default=str,
                        )
                        + "\n"
                    )
                    out.flush()
    finally:
        await api.close()
    print_summary(reports, loads)
    print(f"figures: {results}")
    return 0 if all(c.passed for r in reports for c in r.checks) else 1


def _source() -> Obj:
    """Which operator code ran: the commit, and whether operator/ had uncommitted edits."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "operator_dirty": bool(git("status", "--porcelain", "--", "operator")),
    }


def _machine() -> Obj:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return {"cpu": cpu, "nproc": os.cpu_count(), "loadavg": os.getloadavg()[0]}


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, list[str], int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rig", type=Path, default=Path("/tmp/k8s"), help="the realk8s folder")
    parser.add_argument("--kubeconfig", type=Path, help="default: RIG/kubeconfig")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=("burst", "noise", "serving"),
        default=["burst", "noise", "serving"],
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of each scenario")
    parser.add_argument("--objects", type=int, default=1000, help="TrainingJobs of the burst")
    parser.add_argument("--pods", type=int, default=5000, help="unrelated pods")
    parser.add_argument("--services", type=int, default=200, help="InferenceServices")
    parser.add_argument("--pod-namespaces", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=60.0, help="target seconds")
    parser.add_argument("--quiet", type=float, default=60.0, help="seconds of the quiet window")
    parser.add_argument("--rss-limit-mb", type=float, default=150.0)
    parser.add_argument("--clients", type=int, default=32, help="concurrent bench requests")
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument("--hold", type=float, default=20.0, help="noise: seconds after reconcile")
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        dest="operator_args",
        help="extra flag for kiln-operator (repeatable), e.g. --operator-arg=--workers=8",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/kiln-bench/operator-scale"))
    args = parser.parse_args(argv)
    opts = Options(
        rig=args.rig,
        kubeconfig=args.kubeconfig or args.rig / "kubeconfig",
        objects=args.objects,
        pods=args.pods,
        services=args.services,
        pod_namespaces=args.pod_namespaces,
        deadline=args.deadline,
        quiet=args.quiet,
        rss_limit_mb=args.rss_limit_mb,
        clients=args.clients,
        operator_args=args.operator_args,
        settle_timeout=args.settle_timeout,
        hold=args.hold,
        work=args.work,
    )
    return opts, args.scenarios, args.repeats


def main(argv: Sequence[str] | None = None) -> int:
    opts, scenarios, repeats = parse_args(argv)
    return asyncio.run(main_async(opts, scenarios, repeats))


if __name__ == "__main__":
    sys.exit(main())
