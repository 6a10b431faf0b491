"""The raw ONNX Runtime ceiling: ``session.run`` in a tight loop, no server, one JSON line
per (model, batch) with calls/s, rows/s and per-call p50/p99.

Run it under ``taskset`` with ``--threads 1`` to get the same CPU budget the pinned server has.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort
from make_models import FEATURES  # type: ignore[import-not-found]


def measure(session: ort.InferenceSession, x: np.ndarray, seconds: float) -> dict[str, float]:
    feeds = {"input": x}
    for _ in range(20):
        session.run(None, feeds)
    timings = []
    start = time.perf_counter()
    end = start + seconds
    while True:
        before = time.perf_counter()
        session.run(None, feeds)
        after = time.perf_counter()
        timings.append(after - before)
        if after >= end:
            break
    wall = time.perf_counter() - start
    lat = np.array(timings)
    return {
        "calls_s": len(lat) / wall,
        "rows_s": len(lat) * x.shape[0] / wall,
        "p50_us": float(np.percentile(lat, 50) * 1e6),
        "p99_us": float(np.percentile(lat, 99) * 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models_dir")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--models", default="tabular,wide")
    args = parser.parse_args()
    for name in args.models.split(","):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            os.path.join(args.models_dir, name, "model.onnx"), options, ["CPUExecutionProvider"]
        )
        rng = np.random.default_rng(0)
        for batch in (int(b) for b in args.batches.split(",")):
            x = rng.standard_normal((batch, FEATURES[name])).astype(np.float32)
            result = {"kind": "raw", "model": name, "batch": batch, "threads": args.threads}
            result.update(measure(session, x, args.seconds))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
