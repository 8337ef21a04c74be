#!/usr/bin/env bash
# Runs tests/gpu on the project's offline GPU host, from the repository root there.
# The host has torch but no vLLM and no package index: host_env.sh unpacks the bundle that
# shared/gpu-host/build-bundle.sh made (vLLM 0.26.0 + locust), once, then the tests run.
#   lab/gpu/run_on_host.sh PARTS_DIR RESULTS_DIR [PYTEST_ARGS...]
set -euo pipefail
parts=${1:?usage: run_on_host.sh PARTS_DIR RESULTS_DIR}
results=${2:?usage: run_on_host.sh PARTS_DIR RESULTS_DIR}
# shellcheck source-path=SCRIPTDIR source=host_env.sh
source "$(dirname "$0")/host_env.sh" "$parts"
mkdir -p "$results"
export TPSERVE_GPU_RESULTS="$results"
python3 -m pytest tests/gpu -v -s -p no:cacheprovider -o addopts="" "${@:3}"
