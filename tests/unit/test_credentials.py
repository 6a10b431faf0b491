"""The operator authenticates as its kubeconfig or service account says: a bearer token is
sent (kubernetes-client keeps it under the ``BearerToken`` key), as are basic credentials."""

from __future__ import annotations

from pathlib import Path

import yaml

from kiln_operator.kube import load_credentials


def kubeconfig(path: Path, user: dict[str, str]) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_kubeconfig_token_is_sent_as_a_bearer_token(tmp_path: Path) -> None:
    credentials = load_credentials(str(kubeconfig(tmp_path / "k", {"token": "s3cret"})))
    assert credentials.authorization() == "Bearer s3cret"
    assert credentials.server == "https://127.0.0.1:6443"


def test_a_service_account_token_file_is_read(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-the-pod")
    path = kubeconfig(tmp_path / "k", {"tokenFile": str(token)})
    assert load_credentials(str(path)).authorization() == "Bearer from-the-pod"


def test_a_client_certificate_user_sends_no_authorization_header(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "k", {})
    assert load_credentials(str(path)).authorization() is None
