# One target per job. Each bootstraps .venv on first use, so a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME ?= cpu
HOST ?= 127.0.0.1
PORT ?= 8000
SOURCE ?= distilbert-base-uncased
OUT ?= models/export
MODEL_ID ?=
MODEL_DIR ?=
TEACHER ?= bert-base-uncased
CORPUS ?=
STUDENT ?= models/student
DISTILL_ARGS ?=
GPU_CHECK_OUT ?= gpu-check-results
GPU_CHECK_ARGS ?=
BENCH_ARGS ?=

.PHONY: serve test test-fast export bench gpu-check distill default-model train-demo train-head clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: the local CPU wheel; anything else pulls gigabytes of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[$(RUNTIME),export,test,bench]"
	touch $(STAMP)

serve: $(STAMP)
	$(PY) -m app --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not container and not browser"

export: $(STAMP)
	$(PY) -m model_export $(SOURCE) --out $(OUT) $(if $(MODEL_ID),--model-id $(MODEL_ID))

# make bench [MODEL_DIR=dir] [BENCH_ARGS="--quick"]: table, bench-results/bench.json and bench.png
bench: $(STAMP)
	$(PY) -m app.bench $(MODEL_DIR) --json bench-results/bench.json $(BENCH_ARGS)

# The GPU path end to end (docs/gpu.md): on a GPU host `make gpu-check RUNTIME=gpu GPU_CHECK_ARGS="--mode gpu"`
# in a fresh venv; elsewhere the CPU mode with tiny models, in under a minute.
gpu-check: $(STAMP)
	$(PY) -m app.gpu_check --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# make distill CORPUS=path/to/texts [TEACHER=hub-id-or-dir] [STUDENT=dir] [DISTILL_ARGS="--max-steps 2000"]
distill: $(STAMP)
	$(PY) -m model_export.distill $(TEACHER) $(CORPUS) --out $(STUDENT) $(DISTILL_ARGS)

default-model: $(STAMP)
	$(PY) -m model_export.default_model build

# The demo fill-mask model, trained by `python -m model_export.distill` (teacher-free, from all-MiniLM-L6-v2).
train-demo: $(STAMP)
	$(PY) -m model_export.default_model train

# The target's earlier name, from when only the demo's head was trained.
train-head: train-demo

clean:
	rm -rf $(VENV) models .pytest_cache
