"""`python -m tests.kubeemu [--port 8001]`: serve the emulator in the foreground (for kubectl)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.kubeemu.server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    emulator = Emulator(host=args.host, port=args.port)
    url = emulator.start()
    print(f"Kubernetes API emulator serving at {url}", flush=True)
    print("kubeconfig: clusters[0].cluster.server: " + url + " (no credentials needed)", flush=True)
    stopped.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
