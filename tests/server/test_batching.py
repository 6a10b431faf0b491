"""Dynamic batching: concurrent requests merge into few ONNX Runtime calls, split back exactly;
incompatible requests never merge; an idle server adds no delay."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from kiln_server.batching import Batcher
from kiln_server.errors import InferenceError
from kiln_server.runtime import OnnxModel
from tests.server import models
from tests.server.server_process import ServerProcess, metric_value


class CountingModel:
    """A real ONNX model whose calls are recorded (rows per call and outputs asked for)."""

    def __init__(self, path: str) -> None:
        self.model = OnnxModel(path, threads=1)
        self.calls: list[tuple[int, tuple[str, ...]]] = []

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append((next(iter(feeds.values())).shape[0], tuple(names)))
        return self.model.run(names, feeds)


def make_batcher(model: CountingModel, **overrides: object) -> Batcher:
    options: dict[str, object] = {
        "max_batch_size": 64,
        "max_queue_delay": 0.0,
        "max_queued_requests": 1024,
        "mergeable": True,
        "run_inline": False,
        "on_batch": lambda rows, seconds: None,
        "on_queued": lambda seconds: None,
    }
    options.update(overrides)
    return Batcher(model.run, **options)  # type: ignore[arg-type]


@pytest.fixture
def mixed_model(mixed_dir: str) -> CountingModel:
    return CountingModel(os.path.join(mixed_dir, "model.onnx"))


@pytest.fixture
def tabular_model(tabular_dir: str) -> CountingModel:
    return CountingModel(os.path.join(tabular_dir, "model.onnx"))


def rows(n: int, seed: int) -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)}


@pytest.mark.parametrize("inline", [True, False])
async def test_concurrent_requests_merge_and_split_back_exactly(
    tabular_model: CountingModel, inline: bool
) -> None:
    batcher = make_batcher(tabular_model, run_inline=inline)
    inputs = [rows(n, seed) for seed, n in enumerate([1, 3, 1, 2, 5])]
    results = await asyncio.gather(
        *(batcher.predict(feeds, ("output",), feeds["input"].shape[0]) for feeds in inputs)
    )
    batcher.close()
    assert tabular_model.calls == [(12, ("output",))]
    for feeds, [output] in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(output, tabular_model.model.run(["output"], feeds)[0])


async def test_batches_never_exceed_the_max_batch_size(tabular_model: CountingModel) -> None:
    batcher = make_batcher(tabular_model, max_batch_size=4)
    await asyncio.gather(*(batcher.predict(rows(1, i), ("output",), 1) for i in range(10)))
    batcher.close()
    assert [n for n, _ in tabular_model.calls] == [4, 4, 2]


async def test_a_request_larger_than_the_max_batch_runs_alone(
    tabular_model: CountingModel,
) -> None:
    batcher = make_batcher(tabular_model, max_batch_size=4)
    [output] = await batcher.predict(rows(9, 0), ("output",), 9)
    batcher.close()
    assert output.shape == (9, 3)
    assert tabular_model.calls == [(9, ("output",))]


async def test_a_request_over_the_max_batch_leaves_the_event_loop_even_for_a_cheap_model(
    tabular_dir: str,
) -> None:
    class ThreadRecordingModel(CountingModel):
        def __init__(self, path: str) -> None:
            super().__init__(path)
            self.threads: list[int] = []

        def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            self.threads.append(threading.get_ident())
            return super().run(names, feeds)

    model = ThreadRecordingModel(os.path.join(tabular_dir, "model.onnx"))
    batcher = make_batcher(model, run_inline=True, max_batch_size=4)
    await batcher.predict(rows(4, 0), ("output",), 4)
    await batcher.predict(rows(5, 1), ("output",), 5)
    batcher.close()
    loop_thread = threading.get_ident()
    assert model.threads[0] == loop_thread  # at most max_batch_size rows: inline
    assert model.threads[1] != loop_thread


async def test_requests_with_different_outputs_or_shapes_are_not_merged(
    mixed_model: CountingModel,
) -> None:
    def feeds(n: int, width: int = 1) -> dict[str, np.ndarray]:
        return {
            "counts": np.ones((n, 4), np.int64),
            "flags": np.zeros((n, 2), bool),
            "labels": np.full((n, width), "a", dtype=object),
            "scale": np.ones((n, 1)),
        }

    batcher = make_batcher(mixed_model)
    await asyncio.gather(
        batcher.predict(feeds(1), ("total",), 1),
        batcher.predict(feeds(2), ("doubled",), 2),
        batcher.predict(feeds(1), ("total",), 1),
        batcher.predict(feeds(1), ("total", "doubled"), 1),
    )
    batcher.close()
    assert sorted(mixed_model.calls) == [
        (1, ("total", "doubled")),
        (2, ("doubled",)),
        (2, ("total",)),
    ]


async def test_an_unmergeable_model_runs_each_request_alone(
    tabular_model: CountingModel,
) -> None:
    batcher = make_batcher(tabular_model, mergeable=False)
    await asyncio.gather(*(batcher.predict(rows(1, i), ("output",), 1) for i in range(3)))
    batcher.close()
    assert tabular_model.calls == [(1, ("output",))] * 3


async def test_an_idle_batcher_does_not_wait_for_the_queue_delay(
    tabular_model: CountingModel,
) -> None:
    batcher = make_batcher(tabular_model, max_queue_delay=0.5)
    start = time.perf_counter()
    await batcher.predict(rows(1, 0), ("output",), 1)
    await batcher.predict(rows(1, 1), ("output",), 1)
    elapsed = time.perf_counter() - start
    batcher.close()
    assert elapsed < 0.25


async def test_a_failing_merged_call_fails_only_the_request_that_caused_it(
    tmp_path: object,
) -> None:
    directory = str(tmp_path)
    models.lookup(directory)
    model = CountingModel(os.path.join(directory, "model.onnx"))
    batcher = make_batcher(model)

    def index(value: int) -> dict[str, np.ndarray]:
        return {"index": np.array([value], dtype=np.int64)}

    good, bad, other = await asyncio.gather(
        batcher.predict(index(1), ("row",), 1),
        batcher.predict(index(99), ("row",), 1),
        batcher.predict(index(3), ("row",), 1),
        return_exceptions=True,
    )
    batcher.close()
    assert isinstance(bad, Exception)
    assert "99" in str(bad)
    np.testing.assert_array_equal(good[0], [[2.0, 3.0]])  # type: ignore[index]
    np.testing.assert_array_equal(other[0], [[6.0, 7.0]])  # type: ignore[index]
    assert model.calls == [(3, ("row",)), (1, ("row",)), (1, ("row",)), (1, ("row",))]


@pytest.mark.parametrize("inline", [True, False])
async def test_a_failing_rows_observer_neither_fails_requests_nor_stalls_the_batcher(
    tabular_model: CountingModel, inline: bool
) -> None:
    def broken_observer(feeds: dict[str, np.ndarray]) -> None:
        raise ValueError("could not broadcast input array")

    batcher = make_batcher(tabular_model, run_inline=inline, on_rows=broken_observer)
    merged = await asyncio.wait_for(
        asyncio.gather(*(batcher.predict(rows(1, i), ("output",), 1) for i in range(3))), 5
    )
    alone = await asyncio.wait_for(batcher.predict(rows(2, 7), ("output",), 2), timeout=5)
    batcher.close()
    assert [outputs[0].shape for outputs in merged] == [(1, 3)] * 3
    assert alone[0].shape == (2, 3)
    assert tabular_model.calls == [(3, ("output",)), (2, ("output",))]


async def test_requests_beyond_the_queue_bound_are_refused_with_503(
    tabular_model: CountingModel,
) -> None:
    batcher = make_batcher(tabular_model, max_queued_requests=3)
    accepted: list[asyncio.Future[list[np.ndarray]]] = []
    refused: list[InferenceError] = []
    for i in range(5):
        try:
            accepted.append(batcher.predict(rows(1, i), ("output",), 1))
        except InferenceError as error:
            refused.append(error)
    await asyncio.gather(*accepted)
    assert [error.status for error in refused] == [503, 503]
    assert "overloaded: 3 requests are already waiting" in refused[0].message
    assert tabular_model.calls == [(3, ("output",))]
    await batcher.predict(rows(1, 9), ("output",), 1)  # the queue drained: accepted again
    batcher.close()


@pytest.mark.server
def test_concurrent_http_requests_show_merged_batches_in_the_histogram(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = str(tmp_path_factory.mktemp("slow"))
    models.slow(directory)
    server = ServerProcess(directory, "slow", "--threads", "1", "--max-batch-size", "64")
    try:
        server.wait_ready()
        session = ort.InferenceSession(os.path.join(directory, "model.onnx"))
        inputs = [np.full((1, 512), i / 10, dtype=np.float32) for i in range(24)]

        def call(x: np.ndarray) -> list[float]:
            reply = server.infer(
                {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 512],
                             "data": x.reshape(-1).tolist()}]}
            )  # fmt: skip
            assert reply.status == 200, reply.body
            return list(reply.json()["outputs"][0]["data"])

        with ThreadPoolExecutor(24) as pool:
            outputs = list(pool.map(call, inputs))
        for x, got in zip(inputs, outputs, strict=True):
            np.testing.assert_allclose(got, session.run(None, {"input": x})[0][0], rtol=1e-4)
        exposition = server.metrics()
        calls = metric_value(exposition, "kiln_inference_batch_size_count")
        rows_total = metric_value(exposition, "kiln_inference_batch_size_sum")
        single_row_calls = metric_value(exposition, "kiln_inference_batch_size_bucket", le="1.0")
        assert rows_total == 24
        assert calls is not None
        assert calls < 24
        assert single_row_calls is not None
        assert single_row_calls < calls
        assert metric_value(exposition, "kiln_inference_requests_total", code="200") == 24
        assert json.loads(server.get("/v2/health/ready").body) == {"ready": True}
    finally:
        server.stop()


@pytest.mark.server
def test_requests_over_the_max_batch_size_are_served_beside_small_ones(tabular_dir: str) -> None:
    server = ServerProcess(tabular_dir, "tabular", "--threads", "1", "--max-batch-size", "4")
    try:
        server.wait_ready()
        session = ort.InferenceSession(os.path.join(tabular_dir, "model.onnx"))
        inputs = [rows(n, seed)["input"] for seed, n in enumerate([1, 50, 1, 3, 9, 1, 200, 2])]

        def call(x: np.ndarray) -> list[float]:
            reply = server.infer(
                {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                             "data": x.reshape(-1).tolist()}]}
            )  # fmt: skip
            assert reply.status == 200, reply.body
            return list(reply.json()["outputs"][0]["data"])

        with ThreadPoolExecutor(8) as pool:
            outputs = list(pool.map(call, inputs))
        for x, got in zip(inputs, outputs, strict=True):
            expected = session.run(None, {"input": x})[0].reshape(-1)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    finally:
        server.stop()


async def test_under_load_a_queue_delay_waits_for_the_batch_to_fill(
    tabular_model: CountingModel,
) -> None:
    batcher = make_batcher(tabular_model, max_queue_delay=0.2, max_batch_size=4)
    await asyncio.gather(*(batcher.predict(rows(1, i), ("output",), 1) for i in range(2)))
    first = batcher.predict(rows(1, 2), ("output",), 1)
    await asyncio.sleep(0.02)  # without the delay, the first request would have run alone
    second = batcher.predict(rows(1, 3), ("output",), 1)
    await asyncio.gather(first, second)
    batcher.close()
    assert [n for n, _ in tabular_model.calls] == [2, 2]


async def test_a_batch_that_fills_up_does_not_wait_out_the_queue_delay(
    tabular_model: CountingModel,
) -> None:
    batcher = make_batcher(tabular_model, max_queue_delay=5.0, max_batch_size=2)
    await asyncio.gather(*(batcher.predict(rows(1, i), ("output",), 1) for i in range(2)))
    start = time.perf_counter()
    first = batcher.predict(rows(1, 2), ("output",), 1)
    await asyncio.sleep(0.01)
    await asyncio.gather(first, batcher.predict(rows(1, 3), ("output",), 1))
    elapsed = time.perf_counter() - start
    batcher.close()
    assert [n for n, _ in tabular_model.calls] == [2, 2]
    assert elapsed < 1.0
