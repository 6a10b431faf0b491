"""Write kubeconfig files that kubectl, kopf and the ``kubernetes`` client all accept.

Each backend hands subprocesses (kubectl, ``kiln-operator``) one file, so the tests reach
the API exactly as a user's tools would.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "kiln-test"


def write_kubeconfig(
    path: Path,
    server: str,
    *,
    ca_cert: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
) -> Path:
    """Write a one-context kubeconfig for ``server``; credentials are embedded."""
    cluster: dict[str, Any] = {"server": server}
    if ca_cert is not None:
        cluster["certificate-authority-data"] = _b64(ca_cert)
    user: dict[str, Any] = {}
    if client_cert is not None and client_key is not None:
        user["client-certificate-data"] = _b64(client_cert)
        user["client-key-data"] = _b64(client_key)
    if token is not None:
        user["token"] = token
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": cluster}],
        "users": [{"name": CONTEXT, "user": user}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
