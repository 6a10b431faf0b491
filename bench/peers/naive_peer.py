"""The naive peer: FastAPI + uvicorn + ONNX Runtime as a tutorial would write it (pydantic
request model, a plain ``def`` endpoint, uvicorn defaults). JSON tensors only.

    python naive_peer.py MODEL_FILE MODEL_NAME PORT [--ort-threads N]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

parser = argparse.ArgumentParser()
parser.add_argument("model_file")
parser.add_argument("model_name")
parser.add_argument("port", type=int)
parser.add_argument("--ort-threads", type=int, default=1)
args = parser.parse_args()

options = ort.SessionOptions()
options.intra_op_num_threads = args.ort_threads
session = ort.InferenceSession(args.model_file, options, ["CPUExecutionProvider"])
app = FastAPI()


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class Request(BaseModel):
    id: str | None = None
    inputs: list[Tensor]


@app.get("/v2/health/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.get(f"/v2/models/{args.model_name}/ready")
def model_ready() -> dict[str, Any]:
    return {"name": args.model_name, "ready": True}


@app.post(f"/v2/models/{args.model_name}/infer")
def infer(request: Request) -> dict[str, Any]:
    feeds = {t.name: np.asarray(t.data, dtype=np.float32).reshape(t.shape) for t in request.inputs}
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    return {
        "model_name": args.model_name,
        "id": request.id,
        "outputs": [
            {"name": n, "shape": list(r.shape), "datatype": "FP32", "data": r.ravel().tolist()}
            for n, r in zip(names, results, strict=True)
        ],
    }


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=args.port)
