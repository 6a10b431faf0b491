"""``kiln-server fetch`` and ``validate``: local, pvc, http and s3 sources, digests checked
whenever given (``validate`` always needs one; ``fetch`` without one warns), and the signature
report in stdout and the termination message."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from kiln_server.baseline import compute_baseline
from kiln_server.contract import VALIDATION_FAILED_EXIT_CODE
from kiln_server.fetch import FetchError, local_path, with_retries
from kiln_server.validate import compact, model_opset
from tests.server import models
from tests.server.server_process import free_port

Obj = dict[str, Any]


def kiln(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiln_server", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


def sha256_of(path: str) -> str:
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    directory = str(tmp_path_factory.mktemp("artifact"))
    path = models.mixed(directory)
    return path, sha256_of(path)


@pytest.fixture(scope="module")
def http_root(artifact: tuple[str, str]) -> Iterator[str]:
    directory = os.path.dirname(artifact[0])

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=directory, **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def s3_endpoint(artifact: tuple[str, str]) -> Iterator[dict[str, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    client = boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    client.create_bucket(Bucket="models")
    client.upload_file(artifact[0], "models", "mixed/v1/model.onnx")
    yield env
    server.stop()


def test_fetch_over_http_verifies_and_places_the_artifact(
    artifact: tuple[str, str], http_root: str, tmp_path: object
) -> None:
    dest = os.path.join(str(tmp_path), "model")
    result = kiln("fetch", "--uri", f"{http_root}/model.onnx", "--sha256", artifact[1],
                  "--dest", dest)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == os.path.join(dest, "model.onnx")
    assert sha256_of(os.path.join(dest, "model.onnx")) == artifact[1]


def test_fetch_with_a_wrong_digest_fails_precisely_and_leaves_nothing(
    artifact: tuple[str, str], http_root: str, tmp_path: object
) -> None:
    dest = os.path.join(str(tmp_path), "model")
    wrong = "0" * 64
    result = kiln("fetch", "--uri", f"{http_root}/model.onnx", "--sha256", wrong, "--dest", dest)
    assert result.returncode == 1
    assert f"sha256 mismatch for {http_root}/model.onnx: expected {wrong}, got {artifact[1]}" in (
        result.stderr
    )
    assert os.listdir(dest) == []


def test_fetch_reports_http_errors(http_root: str, tmp_path: object) -> None:
    result = kiln("fetch", "--uri", f"{http_root}/missing.onnx", "--sha256", "a" * 64,
                  "--dest", str(tmp_path))  # fmt: skip
    assert result.returncode == 1
    assert "answered HTTP 404" in result.stderr


def test_fetch_from_s3_compatible_storage(
    artifact: tuple[str, str], s3_endpoint: dict[str, str], tmp_path: object
) -> None:
    result = kiln("fetch", "--uri", "s3://models/mixed/v1/model.onnx", "--sha256", artifact[1],
                  "--dest", str(tmp_path), env=s3_endpoint)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256_of(os.path.join(str(tmp_path), "model.onnx")) == artifact[1]
    missing = kiln("fetch", "--uri", "s3://models/nope.onnx", "--sha256", artifact[1],
                   "--dest", str(tmp_path), env=s3_endpoint)  # fmt: skip
    assert missing.returncode == 1
    assert "s3 GET s3://models/nope.onnx failed" in missing.stderr


def test_fetch_resolves_pvc_uris_under_the_mount_root(
    artifact: tuple[str, str], tmp_path: object
) -> None:
    root = os.path.dirname(os.path.dirname(artifact[0]))
    claim = os.path.basename(os.path.dirname(artifact[0]))
    dest = os.path.join(str(tmp_path), "out")
    result = kiln("fetch", "--uri", f"pvc://{claim}/model.onnx", "--sha256", artifact[1],
                  "--dest", dest, "--pvc-root", root)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256_of(os.path.join(dest, "model.onnx")) == artifact[1]


@pytest.mark.parametrize(
    "uri",
    ["pvc://claim/../other/model.onnx", "pvc://claim/a/../../../etc/passwd", "pvc://../x/model"],
)
def test_pvc_uris_cannot_climb_out_of_their_claim(uri: str) -> None:
    with pytest.raises(FetchError, match="points outside its claim"):
        local_path(uri, "/mnt/pvc")


def test_pvc_uris_may_walk_within_their_claim() -> None:
    assert local_path("pvc://claim/a/../b/model.onnx", "/mnt/pvc") == "/mnt/pvc/claim/b/model.onnx"


def test_unknown_schemes_and_malformed_digests_are_rejected(tmp_path: object) -> None:
    ftp = kiln("fetch", "--uri", "ftp://x/m.onnx", "--sha256", "a" * 64, "--dest", str(tmp_path))
    assert ftp.returncode == 1
    assert "unsupported URI scheme 'ftp'" in ftp.stderr
    short = kiln("fetch", "--uri", "/x", "--sha256", "abc", "--dest", str(tmp_path))
    assert short.returncode == 1
    assert "64 hexadecimal digits" in short.stderr


def test_validate_reports_the_signature_on_stdout_and_in_the_termination_message(
    artifact: tuple[str, str], http_root: str, tmp_path: object
) -> None:
    message = os.path.join(str(tmp_path), "termination-log")
    result = kiln("validate", "--uri", f"{http_root}/model.onnx", "--sha256", artifact[1],
                  "--termination-message-path", message)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    with open(message) as written:
        assert json.load(written) == report
    assert report["ok"] is True
    assert report["sha256"] == artifact[1]
    assert report["sizeBytes"] == os.path.getsize(artifact[0])
    assert report["opset"] == models.OPSET
    assert report["inputs"][0] == {"name": "counts", "datatype": "INT64", "shape": [-1, 4]}
    assert [o["datatype"] for o in report["outputs"]] == ["INT64", "BOOL", "BYTES", "FP64"]


def test_validate_with_a_wrong_digest_writes_the_failure(
    artifact: tuple[str, str], tmp_path: object
) -> None:
    message = os.path.join(str(tmp_path), "termination-log")
    result = kiln("validate", "--uri", artifact[0], "--sha256", "f" * 64,
                  env={"KILN_TERMINATION_MESSAGE_PATH": message})  # fmt: skip
    assert result.returncode == VALIDATION_FAILED_EXIT_CODE
    with open(message) as written:
        failure = json.load(written)
    assert (failure["ok"], failure["reason"]) == (False, "DigestMismatch")
    assert failure["error"].startswith(f"sha256 mismatch for {artifact[0]}: expected fff")


def test_validate_rejects_a_file_that_is_not_a_model(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "model.onnx")
    with open(path, "wb") as out:
        out.write(b"definitely not protobuf")
    message = os.path.join(str(tmp_path), "termination-log")
    result = kiln("validate", "--uri", f"file://{path}", "--sha256", sha256_of(path),
                  "--termination-message-path", message)  # fmt: skip
    assert result.returncode == VALIDATION_FAILED_EXIT_CODE
    with open(message) as written:
        failure = json.load(written)
    assert failure["reason"] == "NotOnnx"
    assert failure["error"].startswith(f"file://{path} is not an ONNX model")


def test_termination_messages_stay_under_4_kib_for_huge_signatures() -> None:
    tensors = [{"name": f"input_{i:04d}", "datatype": "FP32", "shape": [-1, i]} for i in range(400)]
    text = compact({"ok": True, "inputs": tensors, "outputs": tensors[:3]})
    assert len(text.encode()) < 4096
    document = json.loads(text)
    assert document["truncated"] is True
    assert document["outputs"] == tensors[:3]


def test_termination_messages_stay_under_4_kib_for_long_multibyte_errors() -> None:
    for error in ("€" * 3000, "🙂" * 3000, "modèle introuvable " * 500):
        text = compact({"ok": False, "error": error})
        assert len(text.encode()) <= 4096 - 64
        document = json.loads(text)
        assert document["ok"] is False
        assert len(document["error"]) > 250
        assert error.startswith(document["error"])


def test_the_opset_is_read_from_the_model_file(artifact: tuple[str, str]) -> None:
    assert model_opset(artifact[0]) == models.OPSET


def validate_report(tmp_path: object, *args: str, env: dict[str, str] | None = None) -> Obj:
    """Run ``kiln-server validate`` and return the report its termination message holds."""
    message = os.path.join(str(tmp_path), "termination-log")
    result = kiln("validate", *args, "--termination-message-path", message, env=env)
    with open(message) as written:
        report: Obj = json.load(written)
    assert result.returncode == (0 if report["ok"] else VALIDATION_FAILED_EXIT_CODE)
    return report


def saved(tmp_path: object, build: Callable[[str], str]) -> tuple[str, str]:
    path = build(os.path.join(str(tmp_path), build.__name__))
    return path, sha256_of(path)


@pytest.mark.parametrize(
    ("build", "reason", "detail"),
    [
        (models.unloadable, "LoadFailed", "No Op registered for NoSuchOperator"),
        (models.fails_at_inference, "InferenceFailed", "one inference on zeros failed"),
    ],
)
def test_validate_names_why_a_model_cannot_serve(
    tmp_path: object, build: Callable[[str], str], reason: str, detail: str
) -> None:
    path, digest = saved(tmp_path, build)
    report = validate_report(tmp_path, "--uri", path, "--sha256", digest)
    assert (report["ok"], report["reason"]) == (False, reason)
    assert detail in report["error"]


def test_validate_a_truncated_model_is_not_onnx(
    artifact: tuple[str, str], tmp_path: object
) -> None:
    path = os.path.join(str(tmp_path), "model.onnx")
    with open(artifact[0], "rb") as source, open(path, "wb") as out:
        out.write(source.read()[:100])
    report = validate_report(tmp_path, "--uri", path, "--sha256", sha256_of(path))
    assert report["reason"] == "NotOnnx"
    assert "truncated protobuf" in report["error"]


class FlakyThenGood(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` GETs, then the file; counts the GETs and keeps
    the Authorization headers it saw."""

    body = b""
    failures = 0
    seen: list[str | None] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        if len(type(self).seen) <= type(self).failures:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky(artifact: tuple[str, str]) -> Iterator[tuple[type[FlakyThenGood], str]]:
    with open(artifact[0], "rb") as source:
        handler = type("Flaky", (FlakyThenGood,), {"body": source.read(), "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/model.onnx"
    server.shutdown()
    server.server_close()


def test_validate_retries_a_busy_server_and_sends_the_secret_authorization(
    artifact: tuple[str, str], flaky: tuple[type[FlakyThenGood], str], tmp_path: object
) -> None:
    handler, uri = flaky
    handler.failures = 2
    report = validate_report(tmp_path, "--uri", uri, "--sha256", artifact[1],
                             env={"KILN_FETCH_AUTHORIZATION": "Bearer s3cret"})  # fmt: skip
    assert report["ok"] is True
    assert handler.seen == ["Bearer s3cret"] * 3


def test_validate_gives_up_on_an_unreachable_uri_after_its_attempts(
    artifact: tuple[str, str], tmp_path: object
) -> None:
    uri = f"http://127.0.0.1:{free_port()}/model.onnx"
    report = validate_report(tmp_path, "--uri", uri, "--sha256", artifact[1],
                             "--fetch-attempts", "2")  # fmt: skip
    assert report["reason"] == "FetchFailed"
    assert report["error"].startswith(f"GET {uri} failed")
    assert report["error"].endswith("(after 2 attempts)")


def test_a_missing_object_is_not_retried() -> None:
    sleeps: list[float] = []
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        raise FetchError("answered HTTP 404 Not Found")

    with pytest.raises(FetchError, match="404"):
        with_retries(attempt, attempts=4, sleep=sleeps.append)
    assert (len(calls), sleeps) == (1, [])


def test_transient_failures_back_off_exponentially() -> None:
    sleeps: list[float] = []

    def attempt() -> str:
        raise FetchError("connection refused", transient=True)

    with pytest.raises(FetchError, match=r"connection refused \(after 4 attempts\)"):
        with_retries(attempt, attempts=4, first_delay=0.5, sleep=sleeps.append)
    assert sleeps == [0.5, 1.0, 2.0]


def write_baseline_json(tmp_path: object, document: object) -> str:
    path = os.path.join(str(tmp_path), "baseline.json")
    with open(path, "w") as out:
        json.dump(document, out)
    return path


def test_validate_checks_the_baseline_as_serving_will(tmp_path: object) -> None:
    path, digest = saved(tmp_path, models.tabular)
    good = compute_baseline(np.random.default_rng(1).standard_normal((200, 8)))
    baseline = write_baseline_json(tmp_path, good)
    report = validate_report(tmp_path, "--uri", path, "--sha256", digest,
                             "--baseline-uri", baseline,
                             "--baseline-sha256", sha256_of(baseline))  # fmt: skip
    assert report["baseline"] == {"input": "input", "features": 8}

    too_wide = compute_baseline(np.random.default_rng(1).standard_normal((200, 9)))
    wide = write_baseline_json(tmp_path, too_wide)
    report = validate_report(tmp_path, "--uri", path, "--sha256", digest, "--baseline-uri", wide)
    assert report["reason"] == "BaselineInvalid"
    assert "is column 8, but input 'input' has 8 columns" in report["error"]

    other = write_baseline_json(tmp_path, {"format": "kiln.baseline/v9", "features": []})
    report = validate_report(tmp_path, "--uri", path, "--sha256", digest, "--baseline-uri", other)
    assert report["reason"] == "BaselineInvalid"
    assert "unknown baseline format 'kiln.baseline/v9'" in report["error"]

    report = validate_report(tmp_path, "--uri", path, "--sha256", digest,
                             "--baseline-uri", wide, "--baseline-sha256", "0" * 64)  # fmt: skip
    assert report["reason"] == "DigestMismatch"


def test_fetch_without_a_digest_places_the_file_unverified_and_warns(
    artifact: tuple[str, str], http_root: str, tmp_path: object
) -> None:
    dest = os.path.join(str(tmp_path), "model")
    result = kiln("fetch", "--uri", f"{http_root}/model.onnx", "--dest", dest,
                  "--filename", "baseline.json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    placed = os.path.join(dest, "baseline.json")
    assert result.stdout.strip() == placed
    assert sha256_of(placed) == artifact[1]
    (warning,) = result.stderr.strip().splitlines()
    assert warning == (
        f"kiln-server fetch: warning: no --sha256 given; {http_root}/model.onnx is fetched "
        "without verifying its digest"
    )


def test_fetch_with_a_digest_does_not_warn(artifact: tuple[str, str], tmp_path: object) -> None:
    result = kiln("fetch", "--uri", artifact[0], "--sha256", artifact[1], "--dest", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_fetch_without_a_digest_still_reports_a_missing_file(tmp_path: object) -> None:
    missing = os.path.join(str(tmp_path), "nope.json")
    result = kiln("fetch", "--uri", missing, "--dest", os.path.join(str(tmp_path), "out"))
    assert result.returncode == 1
    assert f"{missing}: no such file {missing}" in result.stderr


def test_validate_still_requires_a_digest(artifact: tuple[str, str], tmp_path: object) -> None:
    result = kiln("validate", "--uri", artifact[0], "--termination-message-path",
                  os.path.join(str(tmp_path), "termination-log"))  # fmt: skip
    assert result.returncode == 2
    assert "the following arguments are required: --sha256" in result.stderr
