#!/usr/bin/env bash
# The reference note's experiment through `tpserve sweep` on the offline GPU host: a Llama-2 shape with
# dummy weights, 59 built-in prompts × 256 output tokens all in flight, each layout REPEATS times.
#   lab/gpu/sweep_on_host.sh PARTS_DIR OUT_DIR SHAPE TENSORS REPLICAS [REPEATS]
#   e.g. lab/gpu/sweep_on_host.sh /tmp/parts /tmp/sweep llama-2-7b 1,2,4 1 5
set -euo pipefail
parts=${1:?usage: sweep_on_host.sh PARTS_DIR OUT_DIR SHAPE TENSORS REPLICAS [REPEATS]}
out=${2:?} shape=${3:?} tensors=${4:?} replicas=${5:?} repeats=${6:-5}
# shellcheck source-path=SCRIPTDIR source=host_env.sh
source "$(dirname "$0")/host_env.sh" "$parts"
python3 -c "import sys; from pathlib import Path; from tpserve.shapes import SHAPES, write_model_folder; \
write_model_folder(SHAPES[sys.argv[1]], Path('/tmp/tpserve-models') / sys.argv[1])" "$shape"
python3 -m tpserve sweep "/tmp/tpserve-models/$shape" --served-model-name "$shape" --tensor "$tensors" \
  --replicas "$replicas" --repeats "$repeats" --num-requests 59 --max-tokens 256 --concurrency 59 \
  --dummy-weights --serve-arg=--no-allreduce-fusion --serve-arg=--max-model-len=4096 --out "$out"
