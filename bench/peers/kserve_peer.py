"""The KServe peer: an ONNX model as a ``kserve.Model`` subclass on ``kserve.ModelServer``,
the way KServe documents custom Python models, with KServe's default settings.

    python kserve_peer.py --model_file M.onnx --model_name tabular --http_port 8080 \
        --ort_threads 1 [any kserve ModelServer flag]
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64"}

parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--model_file", required=True)
parser.add_argument("--ort_threads", type=int, default=1)
args, _ = parser.parse_known_args()


class OnnxPeer(Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str, threads: int) -> None:
        super().__init__(name)
        self.path = path
        self.threads = threads
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        self.session = ort.InferenceSession(self.path, options, ["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return True

    def predict(
        self, payload: InferRequest, headers: object = None, response_headers: object = None
    ) -> InferResponse:
        feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        results = self.session.run(self.outputs, feeds)
        outputs = []
        for name, array in zip(self.outputs, results, strict=True):
            output = InferOutput(
                name=name, shape=list(array.shape), datatype=DATATYPES[array.dtype]
            )
            output.set_data_from_numpy(array, binary_data=payload.use_binary_outputs)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
        )


if __name__ == "__main__":
    ModelServer().start([OnnxPeer(args.model_name, args.model_file, args.ort_threads)])
