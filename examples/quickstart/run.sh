#!/usr/bin/env bash
# Kiln's quick start on a local kind cluster (needs docker, kind and kubectl):
# builds the images, installs the CRDs and the operator, trains the iris example and waits
# for the run to register a ModelVersion.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${KILN_CLUSTER:-kiln}
NS=${KILN_NAMESPACE:-kiln-demo}

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "quickstart: $tool is required" >&2; exit 1; }
done

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

kubectl apply -f crds/
kubectl wait --for condition=established --timeout=60s -f crds/
kubectl apply -k operator/deploy
kubectl -n kiln-system rollout status deployment/kiln-operator --timeout=180s

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
