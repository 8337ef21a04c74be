#!/usr/bin/env bash
# `tpserve tune` itself on the offline GPU host: a Llama-2 shape with dummy weights, the throughput workload,
# one layout and two axes (the fp8 KV cache, then the batched tokens), one run per candidate, under a latency
# budget. The search's tune.json and run records land in OUT_DIR.
#   lab/gpu/tune_cli_on_host.sh PARTS_DIR OUT_DIR [SHAPE [TENSORS]]
#   e.g. lab/gpu/tune_cli_on_host.sh /tmp/parts /tmp/tune-cli llama-2-7b 1
set -euo pipefail
parts=${1:?usage: tune_cli_on_host.sh PARTS_DIR OUT_DIR [SHAPE [TENSORS]]}
out=${2:?} shape=${3:-llama-2-7b} tensors=${4:-1}
# shellcheck source-path=SCRIPTDIR source=host_env.sh
source "$(dirname "$0")/host_env.sh" "$parts"
python3 -c "import sys; from pathlib import Path; from tpserve.shapes import SHAPES, write_model_folder; \
write_model_folder(SHAPES[sys.argv[1]], Path('/tmp/tpserve-models') / sys.argv[1])" "$shape"
# bfloat16 for every candidate: FlashAttention 3 reads an fp8 KV cache only for a bfloat16 model.
python3 -m tpserve tune "/tmp/tpserve-models/$shape" --served-model-name "$shape" --workload throughput \
  --tensor "$tensors" --vllm kv-cache-dtype=default,fp8 --vllm max-num-batched-tokens=default,16384 \
  --max-ttft-ms 5000 --max-tpot-ms 60 --dummy-weights --serve-arg=--dtype=bfloat16 \
  --serve-arg=--no-allreduce-fusion --serve-arg=--max-model-len=4096 --out "$out"
