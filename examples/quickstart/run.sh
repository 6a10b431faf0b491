#!/usr/bin/env bash
# Kiln's quick start on a local kind cluster (needs docker, kind and kubectl; helm comes from
# .ci/install-helm when it is not on PATH): builds the images, installs Kiln with its chart
# (charts/kiln), trains the iris example and waits for the run to register a ModelVersion.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${KILN_CLUSTER:-kiln}
NS=${KILN_NAMESPACE:-kiln-demo}

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "quickstart: $tool is required" >&2; exit 1; }
done
HELM=$(command -v helm || echo .venv/bin/helm)
[ -x "$HELM" ] || { bash .ci/install-helm .venv/bin && HELM=.venv/bin/helm; }

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config kind-config.yaml
fi
kubectl config use-context "kind-$CLUSTER"

docker build -f operator/Dockerfile -t kiln-operator:dev .
docker build -f model-server/Dockerfile -t kiln-server:dev .
docker build -f examples/training/Dockerfile -t kiln-iris-train:dev examples/training
for image in kiln-operator:dev kiln-server:dev kiln-iris-train:dev; do
  kind load docker-image --name "$CLUSTER" "$image"
done

# The chart installs the CRDs, the operator and its RBAC; the images are the ones just loaded.
kubectl create namespace kiln-system --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace kiln-system pod-security.kubernetes.io/enforce=restricted --overwrite
"$HELM" upgrade --install kiln charts/kiln --namespace kiln-system \
  --set image.repository=kiln-operator --set image.tag=dev \
  --set modelServer.image=kiln-server:dev --wait --timeout 180s

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f examples/quickstart/manifests.yaml -f examples/training/trainingjob.yaml
echo "waiting for the first training run to register a ModelVersion..."
kubectl -n "$NS" wait trainingjob/iris-example --for=condition=Registered --timeout=600s
echo "waiting for the operator to validate it..."
kubectl -n "$NS" wait modelversion -l kiln.dev/model=iris --for=condition=Ready --timeout=300s
echo "serving it..."
kubectl -n "$NS" apply -f examples/training/inferenceservice.yaml
kubectl -n "$NS" wait inferenceservice/iris-example --for=condition=Ready --timeout=300s
kubectl -n "$NS" get kiln
