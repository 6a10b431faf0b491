"""An in-process Kubernetes API server for tests: `Emulator` serves it over loopback HTTP."""

from tests.kubeemu.server import Emulator

__all__ = ["Emulator"]
