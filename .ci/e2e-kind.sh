#!/usr/bin/env bash
# `make e2e-kind`: the whole pipeline on a throwaway kind cluster, installed and submitted the way a user does it
# (docs/e2e-kind.md). Steps:
#   1. check the tools: a container engine with a running daemon (docker or podman), kind, kubectl, python3;
#      one line for each that is missing, exit 2; nothing is downloaded that a package manager should provide
#   2. make setup (the project's .venv), create the kind cluster (pinned node image), install Argo Workflows
#      (pinned release, full CRDs, server-side apply)
#   3. build the CPU image (make image GPU=no) and load it into the cluster; install the templates with that
#      image (osft-pipeline compile --image + kubectl apply -k: the API server checks them against Argo's CRDs)
#   4. start MinIO (pinned) in the pipeline's namespace and create the s3-secret that points the steps at it
#   5. run the on_cluster test (tests/workflows/argo/test_cluster_e2e.py): it uploads the demo data to MinIO,
#      submits examples/laptop-params.yaml + the data URI + a storage URI through the Argo Server, waits, and
#      asserts what the local e2e test asserts (tests/e2e_checks.py); no Model Registry: register is skipped
#   6. print the tasks' phases and the run's report; delete the cluster unless KEEP=1
#
# `.ci/e2e-kind.sh --check` (make e2e-kind ARGS=--check) checks the tools only.
# Settings (environment variables): KEEP=1 (keep the cluster; a later run reuses it), CLUSTER (kind cluster name,
# osft-e2e), NAMESPACE (osft-e2e), ENGINE (docker or podman; default: the first one that works), E2E_IMAGE
# (localhost/osft-pipeline:e2e-cpu), E2E_TIMEOUT (seconds the run may take, 3600), E2E_WORK (.work/e2e-kind).
set -euo pipefail

# --- pins: the versions this end to end is run against (docs/e2e-kind.md; .github/workflows/e2e-kind.yml) ----------
KIND_VERSION="v0.31.0"  # the kind release whose default node image is the one below
KIND_NODE_IMAGE="kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"
ARGO_VERSION="v4.0.10"  # one of the two versions whose full CRDs the lint checks the templates against
ARGO_INSTALL_URL="https://github.com/argoproj/argo-workflows/releases/download/${ARGO_VERSION}/install.yaml"
MINIO_IMAGE="quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z@sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e"

CLUSTER="${CLUSTER:-osft-e2e}"
NAMESPACE="${NAMESPACE:-osft-e2e}"
IMAGE="${E2E_IMAGE:-localhost/osft-pipeline:e2e-cpu}"
TIMEOUT="${E2E_TIMEOUT:-3600}"
KEEP="${KEEP:-0}"
ENGINE="${ENGINE:-}"

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PY="$ROOT/.venv/bin/python"
CLI="$ROOT/.venv/bin/osft-pipeline"
PF_PIDS=()
CLUSTER_UP=0

say() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# One line per missing tool; exit 2 when any is missing. Sets ENGINE to the engine that works.
check_tools() {
  local missing=0 candidates engine installed=""
  if [ -n "$ENGINE" ]; then candidates="$ENGINE"; else candidates="docker podman"; fi
  for engine in $candidates; do
    command -v "$engine" >/dev/null 2>&1 || continue
    installed="${installed:-$engine}"
    if "$engine" info >/dev/null 2>&1; then ENGINE="$engine"; break; fi
  done
  if [ -z "$installed" ]; then
    echo "error: no container engine: install docker (https://docs.docker.com/engine/install/) or podman" \
      "(apt-get install podman, dnf install podman, brew install podman)${ENGINE:+, or unset ENGINE=$ENGINE}" >&2
    missing=1
  elif ! "${ENGINE:-$installed}" info >/dev/null 2>&1; then
    echo "error: $installed is installed but its daemon is not running: start it (sudo systemctl start" \
      "docker; podman: podman machine start, or systemctl --user start podman.socket) and run make e2e-kind again" >&2
    missing=1
  fi
  if ! command -v kind >/dev/null 2>&1; then
    echo "error: kind not found: install kind $KIND_VERSION (brew install kind, go install" \
      "sigs.k8s.io/kind@$KIND_VERSION, or the release binary: docs/e2e-kind.md#what-you-need)" >&2
    missing=1
  fi
  if ! command -v kubectl >/dev/null 2>&1; then
    echo "error: kubectl not found: install kubectl 1.34 to 1.36 (apt-get/dnf install kubectl from the" \
      "Kubernetes package repository, brew install kubectl: docs/e2e-kind.md#what-you-need)" >&2
    missing=1
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 not found: install Python 3.11 or 3.12 (apt-get install python3 python3-venv)" >&2
    missing=1
  fi
  [ "$missing" = 0 ] || exit 2
  local found
  found="$(kind version 2>/dev/null | awk '{print $2}')"
  if [ "$found" != "$KIND_VERSION" ]; then
    echo "warning: kind $found found; the pinned node image is made for kind $KIND_VERSION (it usually works)" >&2
  fi
}

# forward NAME NAMESPACE SERVICE LOCAL_PORT REMOTE_PORT: a kubectl port-forward that restarts when it drops
forward() {
  local log="$WORK/port-forward-$1.log"
  (
    child=""
    trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM INT
    while true; do
      kubectl -n "$2" port-forward "svc/$3" "$4:$5" >>"$log" 2>&1 &
      child=$!
      wait "$child" || true
      sleep 1
    done
  ) &
  PF_PIDS+=("$!")
  local i
  for i in $(seq 1 60); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$4") 2>/dev/null; then return 0; fi
    [ "$i" = 60 ] || sleep 1
  done
  die "port-forward to svc/$3 in $2 did not come up within 60s (see $log)"
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

diagnose() {
  say "diagnosis: pods, volumes and recent events in $NAMESPACE"
  kubectl -n "$NAMESPACE" get pods,pvc -o wide 2>&1 || true
  kubectl -n "$NAMESPACE" get events --sort-by=.lastTimestamp 2>&1 | tail -n 30 || true
  local pod
  for pod in $(kubectl -n "$NAMESPACE" get pods --field-selector=status.phase=Failed -o name 2>/dev/null); do
    say "log of $pod (last 40 lines)"
    kubectl -n "$NAMESPACE" logs "$pod" -c main --tail=40 2>&1 || true
  done
  say "workflow-controller log (last 30 lines)"
  kubectl -n argo logs deployment/workflow-controller --tail=30 2>&1 || true
}

cleanup() {
  local rc=$?
  local pid
  for pid in ${PF_PIDS[@]+"${PF_PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done  # (bash 3.2: set -u)
  if [ "$rc" != 0 ] && [ "$CLUSTER_UP" = 1 ]; then diagnose; fi
  if [ "$CLUSTER_UP" = 1 ]; then
    if [ "$KEEP" = 1 ]; then
      say "KEEP=1: cluster $CLUSTER kept (KUBECONFIG=$KUBECONFIG; delete it with: kind delete cluster --name $CLUSTER)"
    else
      say "deleting kind cluster $CLUSTER (KEEP=1 keeps it)"
      kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" || true
    fi
  fi
  exit "$rc"
}

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "reusing kind cluster $CLUSTER"
    kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
  else
    say "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
    kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --kubeconfig "$KUBECONFIG" --wait 180s
  fi
  CLUSTER_UP=1
  kubectl get nodes -o wide
}

install_argo() {
  say "installing Argo Workflows $ARGO_VERSION (full CRDs, server-side apply)"
  kubectl create namespace argo --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply --server-side --force-conflicts -n argo -f "$ARGO_INSTALL_URL"
  kubectl -n argo rollout status deployment/workflow-controller --timeout=300s
  kubectl -n argo rollout status deployment/argo-server --timeout=300s
  local images
  images="$(kubectl -n argo get deployment workflow-controller argo-server \
    -o jsonpath='{.items[*].spec.template.spec.containers[*].image}')"
  case "$images" in
    *":$ARGO_VERSION"*) echo "argo images: $images" ;;
    *) die "Argo's deployments run $images, not $ARGO_VERSION" ;;
  esac
}

build_and_load_image() {
  say "building $IMAGE (CPU base) with $ENGINE"
  make image IMAGE="$IMAGE" GPU=no ENGINE="$ENGINE"
  say "loading $IMAGE into kind cluster $CLUSTER"
  if [ "$ENGINE" = podman ]; then
    rm -f "$WORK/image.tar"
    podman save --format docker-archive -o "$WORK/image.tar" "$IMAGE"
    kind load image-archive "$WORK/image.tar" --name "$CLUSTER"
    rm -f "$WORK/image.tar"
  else
    kind load docker-image "$IMAGE" --name "$CLUSTER"
  fi
}

install_pipeline() {
  say "installing the pipeline into namespace $NAMESPACE with image $IMAGE"
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
  rm -rf "$WORK/install"
  "$CLI" compile --namespace "$NAMESPACE" --image "$IMAGE" --out "$WORK/install"
  kubectl apply -k "$WORK/install"
  # the account the test submits with: the namespace's `edit` role (Argo aggregates workflows into it)
  kubectl -n "$NAMESPACE" create serviceaccount osft-e2e-submitter --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$NAMESPACE" create rolebinding osft-e2e-submitter --clusterrole=edit \
    --serviceaccount="$NAMESPACE:osft-e2e-submitter" --dry-run=client -o yaml | kubectl apply -f -
}

start_minio() {
  say "starting MinIO ($MINIO_IMAGE) in $NAMESPACE"
  # random values: the steps mask secret values wherever they appear, so a key must not read like a bucket name
  S3_ACCESS_KEY="key$("$PY" -c 'import secrets; print(secrets.token_hex(8))')"
  S3_SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
  kubectl -n "$NAMESPACE" create secret generic minio-root --from-literal=MINIO_ROOT_USER="$S3_ACCESS_KEY" \
    --from-literal=MINIO_ROOT_PASSWORD="$S3_SECRET_KEY" --dry-run=client -o yaml | kubectl apply -f -
  # the steps' S3 credentials and endpoint (dataset reads s3://, publish writes s3://): docs/parameters.md#secrets
  kubectl -n "$NAMESPACE" create secret generic s3-secret --from-literal=AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" \
    --from-literal=AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
    --from-literal=AWS_ENDPOINT_URL="http://minio.$NAMESPACE.svc.cluster.local:9000" \
    --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$NAMESPACE" apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: minio
  labels: {app.kubernetes.io/name: minio, app.kubernetes.io/part-of: osft-e2e}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: minio}
  template:
    metadata:
      labels: {app.kubernetes.io/name: minio}
    spec:
      automountServiceAccountToken: false
      containers:
        - name: minio
          image: $MINIO_IMAGE
          command: [minio, server, /data, --address, ":9000"]
          envFrom:
            - secretRef: {name: minio-root}
          ports:
            - {name: s3, containerPort: 9000}
          readinessProbe:
            httpGet: {path: /minio/health/ready, port: 9000}
            periodSeconds: 5
          volumeMounts:
            - {name: data, mountPath: /data}
      volumes:
        - name: data
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: minio
  labels: {app.kubernetes.io/name: minio, app.kubernetes.io/part-of: osft-e2e}
spec:
  selector: {app.kubernetes.io/name: minio}
  ports:
    - {name: s3, port: 9000, targetPort: 9000}
EOF
  kubectl -n "$NAMESPACE" rollout status deployment/minio --timeout=300s
}

run_test() {
  local argo_port s3_port token out rc=0
  argo_port="$(free_port)"
  s3_port="$(free_port)"
  forward argo argo argo-server "$argo_port" 2746
  forward minio "$NAMESPACE" minio "$s3_port" 9000
  token="$(kubectl -n "$NAMESPACE" create token osft-e2e-submitter --duration=4h)"
  out="$WORK/out"
  rm -rf "$out"
  mkdir -p "$out"
  say "running the pipeline (tests/workflows/argo/test_cluster_e2e.py; at most ${TIMEOUT}s)"
  echo "no Model Registry: no public image of it is pinned here, so register is skipped; the model is published" \
    "to MinIO (s3://osft-e2e/models/run-<id>) instead"
  ARGO_SERVER="https://127.0.0.1:$argo_port" ARGO_INSECURE_SKIP_VERIFY=true ARGO_NAMESPACE="$NAMESPACE" \
    ARGO_TOKEN="$token" OSFT_E2E_S3_ENDPOINT="http://127.0.0.1:$s3_port" OSFT_E2E_S3_ACCESS_KEY="$S3_ACCESS_KEY" \
    OSFT_E2E_S3_SECRET_KEY="$S3_SECRET_KEY" OSFT_E2E_OUT="$out" OSFT_E2E_TIMEOUT="$TIMEOUT" \
    "$PY" -m pytest -m on_cluster tests/workflows/argo/test_cluster_e2e.py -v -rs -p no:cacheprovider || rc=$?
  if [ -f "$out/tasks.txt" ]; then
    say "tasks of workflow $(cat "$out/workflow-name")"
    cat "$out/tasks.txt"
  fi
  if [ -f "$out/report/report.md" ]; then
    say "report ($out/report/report.html)"
    cat "$out/report/report.md"
  fi
  return "$rc"
}

main() {
  check_tools
  if [ "${1:-}" = --check ]; then
    echo "ok: $ENGINE (running), kind $(kind version 2>/dev/null | awk '{print $2}'), kubectl, python3: ready for make e2e-kind"
    return 0
  fi
  WORK="${E2E_WORK:-$ROOT/.work/e2e-kind}"
  mkdir -p "$WORK"
  WORK="$(cd "$WORK" && pwd)"
  export KUBECONFIG="$WORK/kubeconfig"
  if [ "$ENGINE" = podman ]; then export KIND_EXPERIMENTAL_PROVIDER=podman; fi
  trap cleanup EXIT
  say "project environment (make setup)"
  make setup
  create_cluster
  install_argo
  build_and_load_image
  install_pipeline
  start_minio
  run_test
  say "e2e-kind passed: the pipeline ran end to end on kind ($KIND_NODE_IMAGE, Argo $ARGO_VERSION)"
}

main "$@"
