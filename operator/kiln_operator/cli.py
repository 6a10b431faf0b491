"""Command line of ``kiln-operator``: parse flags, then hand over to the runtime.

Nothing here runs at import time; ``main`` starts the operator's event loop only when the
command is invoked.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence

from kiln_operator.options import OperatorOptions

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A Secret's name: a DNS subdomain.
_SECRET = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def parse_args(argv: Sequence[str] | None = None) -> OperatorOptions:
    parser = argparse.ArgumentParser(
        prog="kiln-operator",
        description=(
            "Reconcile Kiln's TrainingJob, ModelVersion and InferenceService resources. "
            "Uses the in-cluster service account inside a pod, else the current kubeconfig "
            "($KUBECONFIG or ~/.kube/config)."
        ),
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeatable; exact names)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness-port",
        type=int,
        default=8080,
        metavar="PORT",
        help="serve the liveness probe at http://0.0.0.0:PORT/healthz (0 disables it)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        metavar="PORT",
        help="serve Prometheus metrics at http://0.0.0.0:PORT/metrics (0 disables it)",
    )
    parser.add_argument(
        "--accelerator-map",
        metavar="FILE",
        default=None,
        help="YAML file mapping accelerator types to node selectors "
        "(e.g. nvidia-h100: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3})",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="re-check every object at least this often, even without events (default 60)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        metavar="N",
        help="reconciles of one kind that may run at once, for different objects (default 4)",
    )
    parser.add_argument(
        "--model-server-image",
        default=OperatorOptions.model_server_image,
        metavar="IMAGE",
        help="image whose entrypoint is kiln-server, for validation Jobs and serving pods "
        f"(default {OperatorOptions.model_server_image})",
    )
    parser.add_argument(
        "--model-server-gpu-image",
        default=None,
        metavar="IMAGE",
        help="the CUDA build of the model-server image, for serving pods with an accelerator "
        "(default: --model-server-image with -gpu appended to its tag)",
    )
    parser.add_argument(
        "--model-server-pull-secret",
        action="append",
        default=[],
        metavar="SECRET",
        dest="model_server_pull_secrets",
        help="a Secret with registry credentials for the model-server images, which "
        "validation Jobs and serving pods list in imagePullSecrets; it must exist in each "
        "namespace they run in (repeat the flag for several)",
    )
    parser.add_argument(
        "--validation-deadline",
        type=int,
        default=OperatorOptions.validation_deadline_seconds,
        metavar="S",
        help="seconds a ModelVersion's validation Job may take (default 600)",
    )
    parser.add_argument(
        "--log-format", choices=("plain", "full", "json"), default="plain", help="log format"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    if not args.resync_seconds > 0:
        parser.error(f"--resync-seconds must be positive, got {args.resync_seconds}")
    if not 1 <= args.workers <= 64:
        parser.error(f"--workers must lie in 1..64, got {args.workers}")
    if not args.validation_deadline >= 1:
        parser.error(f"--validation-deadline must be at least 1, got {args.validation_deadline}")
    if not args.model_server_image.strip():
        parser.error("--model-server-image must name an image")
    if args.model_server_gpu_image is not None and not args.model_server_gpu_image.strip():
        parser.error("--model-server-gpu-image must name an image")
    for secret in args.model_server_pull_secrets:
        if len(secret) > 253 or not _SECRET.match(secret):
            parser.error(
                f"--model-server-pull-secret {secret!r} is not a Secret name (lower-case "
                "letters, digits, '-' and '.', at most 253 characters)"
            )
    for namespace in args.namespaces or ():
        if not _NAMESPACE.match(namespace):
            parser.error(
                f"--namespace {namespace!r} is not a namespace name (lower-case letters, "
                "digits and '-', at most 63 characters)"
            )
    for port_name in ("liveness_port", "metrics_port"):
        port = getattr(args, port_name)
        if not 0 <= port <= 65535:
            parser.error(f"--{port_name.replace('_', '-')} must lie in 0..65535, got {port}")
    return OperatorOptions(
        namespaces=tuple(args.namespaces or ()),
        all_namespaces=bool(args.all_namespaces),
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        accelerator_map=args.accelerator_map,
        log_format=args.log_format,
        verbose=args.verbose,
        resync_seconds=args.resync_seconds,
        workers=args.workers,
        model_server_image=args.model_server_image,
        model_server_gpu_image=args.model_server_gpu_image,
        model_server_pull_secrets=tuple(dict.fromkeys(args.model_server_pull_secrets)),
        validation_deadline_seconds=args.validation_deadline,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # Imported here so that ``--help`` works without the operator extra installed.
    from kiln_operator.accelerators import AcceleratorMapError
    from kiln_operator.runtime import ControllerStopped, run_operator

    try:
        asyncio.run(run_operator(options))
    except KeyboardInterrupt:
        return 130
    except AcceleratorMapError as error:
        print(f"kiln-operator: {error}", file=sys.stderr)
        return 2
    except ControllerStopped as error:
        print(f"kiln-operator: {error}", file=sys.stderr)
        return 1
    return 0
