"""Command line of ``kiln-server``: ``serve``, ``validate`` and ``fetch``.

Every ``serve`` flag can also be set by an environment variable (``--max-batch-size`` is
``KILN_MAX_BATCH_SIZE``); a flag on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kiln_server.contract import TERMINATION_MESSAGE_PATH


def _env(name: str, default: Any, kind: Callable[[str], Any] = str) -> Any:
    raw = os.environ.get("KILN_" + name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(
            f"kiln-server: KILN_{name}={raw!r} is not a valid {kind.__name__}"
        ) from None


def _env_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    default: Any,
    help: str = "",
    kind: Callable[[str], Any] = str,
    **argparse_options: Any,
) -> None:
    """Add ``flag`` with its ``KILN_*`` variable (``--max-batch-size`` is ``KILN_MAX_BATCH_SIZE``)
    as the default; the variable is named once, here, for both the lookup and the help."""
    name = flag.removeprefix("--").replace("-", "_").upper()
    parser.add_argument(
        flag,
        default=_env(name, default, kind),
        help=f"{help} [KILN_{name}]".lstrip(),
        **argparse_options,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve a model over the Open Inference Protocol v2",
        description="Serve DIR/model.onnx (and drift against DIR/baseline.json, if present).",
    )
    _env_flag(serve, "--model-dir", None, help="folder with model.onnx")
    _env_flag(serve, "--model-name", None, help="name clients address")
    _env_flag(serve, "--model-version", None, help="version served under /versions/{v}")
    _env_flag(serve, "--host", "0.0.0.0")
    _env_flag(serve, "--port", 8080, kind=int, type=int)
    _env_flag(
        serve,
        "--max-batch-size",
        64,
        help="rows per merged ONNX Runtime call",
        kind=int,
        type=_positive_int,
    )
    _env_flag(
        serve,
        "--max-queue-delay-ms",
        0.0,
        help="under load, wait up to this long for a batch to fill; 0 = never wait",
        kind=float,
        type=_non_negative_float,
    )
    _env_flag(
        serve,
        "--max-queued-requests",
        1024,
        help="requests waiting for the model beyond this get 503",
        kind=int,
        type=_positive_int,
    )
    _env_flag(
        serve,
        "--device",
        "cpu",
        help="ONNX Runtime execution provider",
        choices=("cpu", "cuda"),
    )
    _env_flag(
        serve,
        "--threads",
        0,
        help="ONNX Runtime intra-op threads; 0 = cores available",
        kind=int,
        type=int,
    )
    _env_flag(
        serve,
        "--max-request-bytes",
        64 * 1024 * 1024,
        help="larger request bodies get 413",
        kind=int,
        type=_positive_int,
    )
    _env_flag(
        serve,
        "--max-buffered-bytes",
        0,
        help="request bodies held at once over all connections before 503; "
        "0 = 4 x --max-request-bytes",
        kind=int,
        type=int,
    )
    _env_flag(
        serve,
        "--drift-window",
        2048,
        help="live rows compared with baseline.json",
        kind=int,
        type=_positive_int,
    )
    _env_flag(
        serve,
        "--keep-alive-timeout",
        75.0,
        help="close connections silent for this many seconds",
        kind=float,
        type=_positive_float,
    )
    _env_flag(
        serve,
        "--max-connections",
        4096,
        help="open connections beyond this are answered 503 and closed",
        kind=int,
        type=_positive_int,
    )
    _env_flag(
        serve,
        "--min-body-rate",
        16384.0,
        help="bytes a second a request body must average once --body-grace is over, "
        "else 408; 0 = no minimum",
        kind=float,
        type=_non_negative_float,
    )
    _env_flag(
        serve,
        "--body-grace",
        5.0,
        help="seconds a request body may take before --min-body-rate applies",
        kind=float,
        type=_non_negative_float,
    )
    _env_flag(
        serve,
        "--shutdown-timeout",
        30.0,
        help="seconds to finish in-flight requests on SIGTERM",
        kind=float,
        type=_non_negative_float,
    )
    _env_flag(serve, "--log-level", "INFO")


def _add_artifact_flags(parser: argparse.ArgumentParser, digest_required: bool = True) -> None:
    parser.add_argument(
        "--uri",
        required=True,
        help="path, file://, pvc://claim/path, http(s):// or s3://bucket/key",
    )
    parser.add_argument(
        "--sha256",
        required=digest_required,
        help="expected digest, 64 hex digits"
        + ("" if digest_required else "; without it the file is not verified"),
    )
    _env_flag(
        parser, "--pvc-root", "/mnt/pvc", help="where pvc://<claim> is mounted as <root>/<claim>"
    )
    _env_flag(
        parser,
        "--fetch-attempts",
        4,
        help="tries of a remote fetch whose failure may pass (backoff 0.5 s, doubling)",
        kind=int,
        type=_positive_int,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiln-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    validate = sub.add_parser("validate", help="fetch, verify, load and test-run a model artifact")
    _add_artifact_flags(validate)
    validate.add_argument("--baseline-uri", help="baseline.json to check against the model")
    validate.add_argument("--baseline-sha256", help="its expected digest, if registered")
    _env_flag(
        validate,
        "--termination-message-path",
        TERMINATION_MESSAGE_PATH,
        help="where the JSON report also goes",
    )
    fetch = sub.add_parser("fetch", help="download a model artifact and verify its digest")
    # A baseline may have no registered digest; a model artifact always has one (the
    # operator always passes it), so only a baseline is ever fetched unverified.
    _add_artifact_flags(fetch, digest_required=False)
    fetch.add_argument("--dest", required=True, help="folder; the artifact becomes DEST/model.onnx")
    fetch.add_argument("--filename", default="model.onnx", help="file name inside --dest")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from kiln_server.logs import configure as configure_logs
    from kiln_server.server import run
    from kiln_server.settings import ServeSettings

    if not args.model_dir or not args.model_name:
        print(
            "kiln-server serve: --model-dir and --model-name are required "
            "(or KILN_MODEL_DIR and KILN_MODEL_NAME)",
            file=sys.stderr,
        )
        return 2
    try:
        configure_logs(args.log_level)
    except ValueError:
        print(f"kiln-server serve: unknown --log-level {args.log_level!r}", file=sys.stderr)
        return 2
    settings = ServeSettings(
        model_dir=args.model_dir,
        model_name=args.model_name,
        model_version=args.model_version,
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        max_queue_delay_ms=args.max_queue_delay_ms,
        max_queued_requests=args.max_queued_requests,
        device=args.device,
        threads=args.threads,
        max_request_bytes=args.max_request_bytes,
        max_buffered_bytes=args.max_buffered_bytes,
        drift_window_rows=args.drift_window,
        keep_alive_timeout=args.keep_alive_timeout,
        max_connections=args.max_connections,
        min_body_rate=args.min_body_rate,
        body_grace=args.body_grace,
        shutdown_timeout=args.shutdown_timeout,
    )
    run(settings)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from kiln_server.fetch import FetchError, fetch

    if args.sha256 is None:
        print(
            f"kiln-server fetch: warning: no --sha256 given; {args.uri} is fetched "
            "without verifying its digest",
            file=sys.stderr,
        )
    try:
        path = fetch(
            args.uri,
            args.sha256,
            args.dest,
            args.filename,
            pvc_root=args.pvc_root,
            attempts=args.fetch_attempts,
        )
    except FetchError as error:
        print(f"kiln-server fetch: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from kiln_server.validate import run_validate

    return run_validate(
        args.uri,
        args.sha256,
        args.termination_message_path,
        args.pvc_root,
        baseline_uri=args.baseline_uri,
        baseline_sha256=args.baseline_sha256,
        attempts=args.fetch_attempts,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"serve": _serve, "fetch": _fetch, "validate": _validate}
    return commands[args.command](args)
