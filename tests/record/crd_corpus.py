"""Record a real kube-apiserver's answer to each CRD of ``tests/corpus/invalid-crds/``.

    KUBEBUILDER_ASSETS=/tmp/k8s/bin python -m tests.record.crd_corpus

starts etcd and kube-apiserver from the assets folder (as the envtest backend does), sends
every corpus CRD, and writes the status code and ``details.causes`` it answered into the
file's ``expect``. Only a real server may write these answers; the emulator is held to them.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.record import real_server
from tests.support.kube import ApiError

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "invalid-crds"


def main() -> int:
    with real_server() as client:
        for path in sorted(CORPUS.glob("*.yaml")):
            case = yaml.safe_load(path.read_text())
            try:
                client.create(case["crd"])
            except ApiError as error:
                case["expect"] = {
                    "code": error.status,
                    "causes": [
                        {k: c[k] for k in ("field", "reason", "message") if k in c}
                        for c in error.body.get("details", {}).get("causes", [])
                    ],
                }
            else:
                client.delete(
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    case["crd"]["metadata"]["name"],
                )
                print(f"{path.name}: ACCEPTED by the real server; not a corpus case")
                continue
            path.write_text(yaml.safe_dump(case, sort_keys=False, width=100))
            print(f"{path.name}: {case['expect']['code']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
