"""One benchmark sitting: raw ONNX Runtime ceilings, then kiln-server and its peers over the
grid (model x batch x concurrency x encoding), each server pinned to one core and wrk to the
other, then paired rounds of the key cell (tabular b1 c64: kiln JSON, kiln binary and the
null app on uvicorn, one after another, round after round), whose ratios the target checks
use: the grid runs each server minutes apart, and the shared machine's speed drifts more
than that between them. Appends one JSON line per measurement to a results file and renders
bench/README.md.

    python bench/driver.py --work /tmp/kiln-bench [--secs 8] [--servers "kiln kserve naive"]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from make_models import FEATURES, build  # type: ignore[import-not-found]  # noqa: E402
from report import load, render  # type: ignore[import-not-found]  # noqa: E402

PORT = 18700
ENCODINGS = ("json", "binary")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_body(model: str, batch: int, encoding: str, path: str) -> int | None:
    """Write a deterministic request body; returns the JSON header length when binary."""
    rng = np.random.default_rng(12345)
    x = rng.uniform(-1, 1, (batch, FEATURES[model])).astype(np.float32)
    tensor: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": list(x.shape)}
    if encoding == "json":
        tensor["data"] = [round(float(v), 6) for v in x.reshape(-1)]
        with open(path, "wb") as out:
            out.write(json.dumps({"inputs": [tensor]}).encode())
        return None
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    with open(path, "wb") as out:
        out.write(header + x.astype("<f4").tobytes())
    return len(header)


def precheck(url: str, body_path: str, header_length: int | None, batch: int) -> str | None:
    """None if one request answers 200 with an output of ``batch`` rows, else why not."""
    with open(body_path, "rb") as source:
        body = source.read()
    headers = {"Content-Type": "application/json"}
    if header_length is not None:  # as wrk sends it (v2_load.lua)
        headers["Inference-Header-Content-Length"] = str(header_length)
        headers["Content-Type"] = "application/octet-stream"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = response.read()
            length = response.headers.get("Inference-Header-Content-Length")
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}: {error.read()[:200]!r}"
    except OSError as error:
        return str(error)
    document = json.loads(answer[: int(length)] if length else answer)
    shape = document["outputs"][0]["shape"]
    if shape[0] != batch:
        return f"output shape {shape}, expected {batch} rows"
    return None


def wrk(
    url: str,
    body_path: str,
    header_length: int | None,
    rows: int,
    conc: int,
    secs: int,
    load_cpus: str,
) -> dict[str, Any]:
    env = {
        **os.environ,
        "KILN_BENCH_BODY": body_path,
        "KILN_BENCH_ROWS": str(rows),
        "KILN_BENCH_HEADER_LENGTH": "" if header_length is None else str(header_length),
    }
    command = [
        "taskset",
        "-c",
        load_cpus,
        "wrk",
        "-t",
        "1",
        "-c",
        str(conc),
        "-d",
        f"{secs}s",
        "--timeout",
        "30s",
        "-s",
        os.path.join(HERE, "v2_load.lua"),
        url,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=secs + 60)
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"wrk printed no result: {result.stdout} {result.stderr}")


# The ceiling: a server that parses each request and answers without a model, on three
# HTTP layers; and kiln-server's data plane behind uvicorn (the HTTP-layer experiment). They
# run in this interpreter, with the same httptools, uvloop and orjson as kiln-server, and
# need uvicorn and granian (bench/run.sh installs them). The model does not matter to a null
# server, so they run the tabular cells only.
NULL_LAYERS = {"null-uvicorn": "uvicorn", "null-granian": "granian", "null-kiln": "kiln"}
TABULAR_ONLY = (*NULL_LAYERS, "kiln-asgi")
NEEDS = {"null-uvicorn": "uvicorn", "null-granian": "granian", "kiln-asgi": "uvicorn"}


def _installed(kind: str) -> bool:
    """The HTTP layer that server ``kind`` runs on, if it needs one, is importable here."""
    return kind not in NEEDS or importlib.util.find_spec(NEEDS[kind]) is not None


def server_command(kind: str, model_dir: str, model: str, port: int, peer_python: str) -> list[str]:
    model_file = os.path.join(model_dir, "model.onnx")
    if kind in NULL_LAYERS:
        peer = os.path.join(HERE, "peers", "null_peer.py")
        return [sys.executable, peer, NULL_LAYERS[kind], str(port)]
    if kind == "kiln-asgi":
        peer = os.path.join(HERE, "peers", "kiln_asgi.py")
        return [sys.executable, peer, model_dir, model, str(port), "--threads", "1"]
    if kind == "kiln":
        return [
            sys.executable,
            "-m",
            "kiln_server",
            "serve",
            "--model-dir",
            model_dir,
            "--model-name",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            "1",
            "--log-level",
            "WARNING",
        ]
    if kind in ("kserve", "kserve-quiet"):
        quiet = ["--enable_latency_logging", "false", "--configure_logging", "false"]
        return [
            peer_python,
            os.path.join(HERE, "peers", "kserve_peer.py"),
            "--model_file",
            model_file,
            "--model_name",
            model,
            "--http_port",
            str(port),
            "--enable_grpc",
            "false",
            "--ort_threads",
            "1",
            *(quiet if kind == "kserve-quiet" else []),
        ]
    if kind == "naive":
        return [
            peer_python,
            os.path.join(HERE, "peers", "naive_peer.py"),
            model_file,
            model,
            str(port),
            "--ort-threads",
            "1",
        ]
    raise ValueError(f"unknown server {kind}")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def running_server(command: list[str], cpus: str, ready_url: str, log_path: str) -> Iterator[int]:
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            ["taskset", "-c", cpus, *command],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited; see {log_path}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.25)
        else:
            raise RuntimeError(f"server not ready after 120 s; see {log_path}")
        yield process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default=os.environ.get("KILN_BENCH_WORK", "/tmp/kiln-bench"))
    parser.add_argument(
        "--servers", default="kiln kserve naive null-uvicorn null-granian null-kiln kiln-asgi"
    )
    parser.add_argument("--models", default="tabular wide")
    parser.add_argument("--batches", default="1 32")
    parser.add_argument("--concs", default="1 16 64")
    parser.add_argument("--secs", type=int, default=8)
    parser.add_argument("--key-repeats", type=int, default=2, help="extra runs of key cells")
    parser.add_argument("--pairs", type=int, default=5, help="paired rounds of the key cell")
    parser.add_argument("--pair-secs", type=int, default=5)
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--load-cpus", default="0")
    parser.add_argument("--results", default=os.path.join(HERE, "results", "raw"))
    parser.add_argument("--readme", default=os.path.join(HERE, "README.md"))
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the pinned servers are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    peer_python = os.path.join(args.work, "peer-venv", "bin", "python")
    models_dir = os.path.join(args.work, "models")
    build(models_dir)
    os.makedirs(args.results, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results_path = os.path.join(args.results, f"{stamp}.jsonl")
    records: list[dict[str, Any]] = []

    def record(entry: dict[str, Any]) -> None:
        entry["run"] = stamp
        records.append(entry)
        with open(results_path, "a") as out:
            out.write(json.dumps(entry) + "\n")

    record(
        {
            "kind": "meta",
            "cpu": platform.processor() or _cpu_name(),
            "nproc": os.cpu_count(),
            "secs": args.secs,
            "server_cpus": args.server_cpus,
            "load_cpus": args.load_cpus,
            "wrk": _wrk_version(),
            "loadavg": os.getloadavg()[0],
        }
    )
    models = args.models.split()
    log("raw ONNX Runtime ceiling: 1 thread, pinned to the server core")
    raw = subprocess.run(
        [
            "taskset",
            "-c",
            args.server_cpus,
            sys.executable,
            os.path.join(HERE, "raw_ort.py"),
            models_dir,
            "--threads",
            "1",
            "--models",
            ",".join(models),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in raw.stdout.splitlines():
        record(json.loads(line))
    body_dir = tempfile.mkdtemp(prefix="kiln-bench-bodies-")
    for kind in args.servers.split():
        if kind in ("kserve", "kserve-quiet", "naive") and not os.path.exists(peer_python):
            log(f"skipping {kind}: no peer venv at {peer_python} (bench/run.sh makes it)")
            continue
        if not _installed(kind):
            log(f"skipping {kind}: {NEEDS[kind]} is not installed here (bench/run.sh installs it)")
            continue
        encodings = ("json",) if kind == "naive" else ENCODINGS
        for model in models:
            if kind in TABULAR_ONLY and model != "tabular":
                continue
            model_dir = os.path.join(models_dir, model)
            url = f"http://127.0.0.1:{PORT}/v2/models/{model}/infer"
            ready = f"http://127.0.0.1:{PORT}/v2/models/{model}/ready"
            command = server_command(kind, model_dir, model, PORT, peer_python)
            log_path = os.path.join(args.work, f"server-{kind}-{model}.log")
            with running_server(command, args.server_cpus, ready, log_path) as pid:
                time.sleep(1.0)
                record({"kind": "rss", "server": kind, "model": model, "idle_mb": rss_mb(pid)})
                warm = os.path.join(body_dir, "warm.json")
                make_body(model, 1, "json", warm)
                wrk(url, warm, None, 1, 4, 2, args.load_cpus)
                for encoding in encodings:
                    for batch in (int(b) for b in args.batches.split()):
                        body = os.path.join(body_dir, f"{model}-{batch}-{encoding}")
                        header_length = make_body(model, batch, encoding, body)
                        problem = precheck(url, body, header_length, batch)
                        if problem is not None:
                            log(f"{kind} {model} b{batch} {encoding}: precheck failed: {problem}")
                            record(
                                {
                                    "kind": "unsupported",
                                    "server": kind,
                                    "model": model,
                                    "batch": batch,
                                    "encoding": encoding,
                                    "why": problem,
                                }
                            )
                            continue
                        for conc in (int(c) for c in args.concs.split()):
                            key = (model, batch, conc) in (("tabular", 1, 64), ("wide", 32, 64))
                            repeats = 1 + (args.key_repeats if key else 0)
                            for rep in range(1, repeats + 1):
                                result = wrk(
                                    url, body, header_length, batch, conc, args.secs, args.load_cpus
                                )
                                result.update(
                                    {
                                        "kind": "cell",
                                        "server": kind,
                                        "model": model,
                                        "batch": batch,
                                        "conc": conc,
                                        "encoding": encoding,
                                        "rep": rep,
                                    }
                                )
                                record(result)
                                log(
                                    f"{kind} {model} b{batch} c{conc} {encoding} rep{rep}: "
                                    f"{result['req_s']:.0f} req/s, p99 {result['p99_ms']:.2f} ms"
                                )
                if kind == "kiln":
                    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics") as response:
                        metrics = response.read().decode()
                    record(
                        {"kind": "batch_sizes", "model": model, "metrics": _batch_sizes(metrics)}
                    )
    if args.pairs > 0:
        paired_rounds(args, models_dir, body_dir, peer_python, record)
    shutil.rmtree(body_dir, ignore_errors=True)
    history = [
        load(os.path.join(args.results, name))
        for name in sorted(os.listdir(args.results))
        if name.endswith(".jsonl")
    ]
    with open(args.readme) as source:
        readme = source.read()
    with open(args.readme, "w") as out:
        out.write(render(readme, records, history))
    log(f"wrote {results_path} and {args.readme}")


# The key cell's contenders in the paired rounds: (server, encoding).
PAIRED = (("kiln", "json"), ("kiln", "binary"), ("null-uvicorn", "json"))


def paired_rounds(
    args: argparse.Namespace,
    models_dir: str,
    body_dir: str,
    peer_python: str,
    record: Callable[[dict[str, Any]], None],
) -> None:
    """Tabular b1 c64 for each contender in turn, ``args.pairs`` rounds, each round starting
    with the next contender (so none always runs first); a fresh server for every run."""
    contenders = [(kind, encoding) for kind, encoding in PAIRED if _installed(kind)]
    model_dir = os.path.join(models_dir, "tabular")
    url = f"http://127.0.0.1:{PORT}/v2/models/tabular/infer"
    ready = f"http://127.0.0.1:{PORT}/v2/models/tabular/ready"
    bodies = {}
    for encoding in ENCODINGS:
        path = os.path.join(body_dir, f"pair-{encoding}")
        bodies[encoding] = (path, make_body("tabular", 1, encoding, path))
    for round_number in range(1, args.pairs + 1):
        shift = (round_number - 1) % len(contenders)
        for kind, encoding in contenders[shift:] + contenders[:shift]:
            command = server_command(kind, model_dir, "tabular", PORT, peer_python)
            log_path = os.path.join(args.work, f"server-pair-{kind}.log")
            body, header_length = bodies[encoding]
            with running_server(command, args.server_cpus, ready, log_path):
                wrk(url, body, header_length, 1, 64, 2, args.load_cpus)  # warm up
                result = wrk(url, body, header_length, 1, 64, args.pair_secs, args.load_cpus)
            result.update(
                {"kind": "pair", "round": round_number, "server": kind, "encoding": encoding}
            )
            record(result)
            log(
                f"pair round {round_number} {kind} {encoding}: {result['req_s']:.0f} req/s, "
                f"p99 {result['p99_ms']:.2f} ms"
            )


def _wrk_version() -> str:
    result = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (result.stdout or result.stderr).split("\n")[0]


def _cpu_name() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def _batch_sizes(exposition: str) -> dict[str, float]:
    values = {}
    for line in exposition.splitlines():
        if line.startswith("kiln_inference_batch_size_count") or line.startswith(
            "kiln_inference_batch_size_sum"
        ):
            name, _, value = line.rpartition(" ")
            values[name.split("{")[0].rsplit("_", 1)[1]] = float(value)
    return values


if __name__ == "__main__":
    main()
