"""Command line of ``kiln-operator``: parse flags, then hand over to kopf.

Nothing here runs at import time; ``main`` builds the handler registry and starts the
operator's event loop only when the command is invoked.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger("kiln.operator")


@dataclass(frozen=True)
class OperatorOptions:
    """What the command line asks of one operator process."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    liveness_port: int = 8080
    metrics_port: int = 9090
    peering: str | None = None
    accelerator_map: str | None = None
    log_format: str = "plain"
    verbose: bool = False
    resync_seconds: float = 60.0


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
        help="watch this namespace (repeatable; glob patterns as kopf accepts them)",
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
        "--peering",
        metavar="NAME",
        default=None,
        help="coordinate with other replicas through this kopf peering object "
        "(default: run standalone)",
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
        "--log-format", choices=("plain", "full", "json"), default="plain", help="log format"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    if not args.resync_seconds > 0:
        parser.error(f"--resync-seconds must be positive, got {args.resync_seconds}")
    for port_name in ("liveness_port", "metrics_port"):
        port = getattr(args, port_name)
        if not 0 <= port <= 65535:
            parser.error(f"--{port_name.replace('_', '-')} must lie in 0..65535, got {port}")
    return OperatorOptions(
        namespaces=tuple(args.namespaces or ()),
        all_namespaces=bool(args.all_namespaces),
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        peering=args.peering,
        accelerator_map=args.accelerator_map,
        log_format=args.log_format,
        verbose=args.verbose,
        resync_seconds=args.resync_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # Imported here so that ``--help`` works without the operator extra installed.
    from kiln_operator.accelerators import AcceleratorMapError
    from kiln_operator.runtime import run_operator

    try:
        asyncio.run(run_operator(options))
    except KeyboardInterrupt:
        return 130
    except AcceleratorMapError as error:
        print(f"kiln-operator: {error}", file=sys.stderr)
        return 2
    return 0
