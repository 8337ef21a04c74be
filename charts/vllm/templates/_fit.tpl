{{/*
vllm.fitProblems: the model must fit the GPUs it is given, by tpserve.plan's rule (src/tpserve/plan.py,
`layout`, pinned by tests/chart/test_fit.py): on each GPU vLLM may use gpu_memory_utilization × the total the
CUDA driver reports; the GPU's share of the weights and a 2 GiB activation reserve come out of it, and the rest
must hold one vllm.maxModelLen sequence of KV cache. fp8 weights quantized at load (--quantization fp8 from
vllm.settings=fp8 or vllm.extraArgs) must also peak, with one module in 16 bits, below the total less 2 GiB for
the CUDA context. The bytes follow the flags the server gets: fp8 weights and an fp8 KV cache at one byte per
value (embeddings, lm_head and norms stay 16-bit). The GPU's total comes from gpu.product; the check is skipped
when the product is not in the table below, when no GPU is requested (the CPU profile) or while a model value
it needs is 0. It assumes a dense model with an lm_head of its own, as the catalog's are.
*/}}
{{- define "vllm.fitProblems" -}}
{{- $problems := list -}}
{{- $m := include "vllm.fitModel" . | fromJson -}}
{{- if $m.known -}}
{{- $v := .Values -}}
{{- $tp := int64 $v.parallelism.tensor -}}
{{- $pp := int64 $v.parallelism.pipeline -}}
{{- $attention := mul (int64 $m.hidden) (int64 $m.headDim) 2 (add (int64 $m.heads) (int64 $m.kv)) -}}
{{- if le (int64 $m.layerLinear) $attention -}}
{{- $problems = append $problems (printf "model.parameterBillions=%v is too few parameters for model.hiddenSize=%d, model.vocabSize=%d, model.attentionHeads=%d and model.layers=%d (their attention and embeddings alone take more): set all of them from the model's config.json (`tpserve plan MODEL --gpu KIND` prints them)" $v.model.parameterBillions (int64 $m.hidden) (int64 $v.model.vocabSize) (int64 $m.heads) (int64 $m.layers)) -}}
{{- else -}}
{{- $here := include "vllm.fitLayout" (dict "m" $m "tp" $tp "pp" $pp) | fromJson -}}
{{- if $here.problem -}}
{{- $reason := "" -}}
{{- $weights := include "vllm.gib" $here.weights -}}
{{- if eq $here.problem "weights" -}}
{{- $reason = printf "the weights need %s per GPU, more than the %s vLLM may use of each (%v × %s)" $weights (include "vllm.gib" $m.usable) $m.utilization (include "vllm.gib" $m.total) -}}
{{- else if eq $here.problem "load" -}}
{{- $reason = printf "the fp8 weights fit (%s per GPU) but loading peaks at %s while vLLM quantizes the 16-bit checkpoint one module at a time, more than the %s free beside the CUDA context (%s less %s)" $weights (include "vllm.gib" $here.peak) (include "vllm.gib" (sub (int64 $m.total) (int64 $m.loadReserve))) (include "vllm.gib" $m.total) (include "vllm.gib" $m.loadReserve) -}}
{{- else if eq $here.problem "kv" -}}
{{- $reason = printf "the weights (%s per GPU) and %s for activations fill the %s vLLM may use of each, leaving nothing for the KV cache" $weights (include "vllm.gib" $m.reserve) (include "vllm.gib" $m.usable) -}}
{{- else -}}
{{- $reason = printf "the KV cache holds %d tokens per GPU, less than one vllm.maxModelLen=%d sequence, so vLLM refuses to start" (int64 $here.tokens) (int64 $m.context) -}}
{{- end -}}
{{- $problems = append $problems (printf "parallelism.tensor=%d × parallelism.pipeline=%d does not fit the model (model.parameterBillions=%v, %s) on gpu.product=%s (%s each): %s; %s" $tp $pp $v.model.parameterBillions $m.bytes $v.gpu.product (include "vllm.gib" $m.total) $reason (include "vllm.fitAlternatives" (dict "m" $m "tp" $tp "pp" $pp "perNode" (int64 $v.gpu.perNode)))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}

{{/*
vllm.fitModel: what the fit rule needs, as JSON; "known" is false when the chart cannot know it. GPU totals are
tpserve.catalog's (what the CUDA driver reports), by GPU feature discovery's nvidia.com/gpu.product label.
*/}}
{{- define "vllm.fitModel" -}}
{{- $v := .Values -}}
{{- $totals := dict "NVIDIA-A10" 23825743872 "NVIDIA-A10G" 23825743872 "NVIDIA-L4" 23675797504 "NVIDIA-A100-SXM4-40GB" 42505076736 "NVIDIA-A100-PCIE-40GB" 42505076736 "NVIDIA-A100-SXM4-80GB" 84987084800 "NVIDIA-A100-80GB-PCIe" 84987084800 "NVIDIA-H100-80GB-HBM3" 85017493504 "NVIDIA-H200" 150114140160 "NVIDIA-B200" 191627264000 -}}
{{- $params := int64 (round (mulf (float64 $v.model.parameterBillions) 1e9) 0) -}}
{{- $hidden := int64 ($v.model.hiddenSize | default 0) -}}
{{- $vocab := int64 ($v.model.vocabSize | default 0) -}}
{{- $heads := int64 $v.model.attentionHeads -}}
{{- $layers := int64 $v.model.layers -}}
{{- $pp := int64 $v.parallelism.pipeline -}}
{{- $known := and $v.gpu.resource (hasKey $totals $v.gpu.product) (gt $params 0) (gt $hidden 0) (gt $vocab 0) (gt $heads 0) (gt $layers 0) (le $pp $layers) (gt $pp 0) (gt (int64 $v.parallelism.tensor) 0) -}}
{{- if not $known -}}
{"known": false}
{{- else -}}
{{- $kv := int64 ($v.model.kvHeads | default $heads) -}}
{{- $given := dict -}}
{{- range $name, $value := $v.vllm.extraArgs }}{{ $_ := set $given (replace "_" "-" $name) (toString $value) }}{{ end -}}
{{- $flags := include "vllm.settingsFlags" . -}}
{{- $fp8 := and $v.image.tpserve (eq $v.vllm.settings "fp8") -}}
{{- $fp8Weights := ternary (eq (get $given "quantization") "fp8") (or $fp8 (contains "--quantization=fp8" $flags)) (hasKey $given "quantization") -}}
{{- $fp8Kv := ternary (hasPrefix "fp8" (get $given "kv-cache-dtype")) (or $fp8 (contains "--kv-cache-dtype=fp8" $flags)) (hasKey $given "kv-cache-dtype") -}}
{{- $embedding := mul $vocab $hidden -}}
{{- $perLayer := div (sub (sub $params (mul 2 $embedding)) $hidden) $layers -}}
{{- $utilization := float64 ($v.vllm.gpuMemoryUtilization | default 0.92) -}}
{{- $total := get $totals $v.gpu.product -}}
{{- $bytes := printf "%s weights%s and a %s KV cache" (ternary "fp8" "16-bit" $fp8Weights) (ternary " quantized at load" "" $fp8Weights) (ternary "fp8" "16-bit" $fp8Kv) -}}
{{- toJson (dict "known" true "hidden" $hidden "heads" $heads "kv" $kv "layers" $layers "headDim" (div $hidden $heads) "embedding" $embedding "layerLinear" (sub $perLayer (mul 2 $hidden)) "layerNorms" (mul 2 $hidden) "width" (ternary 1 2 $fp8Weights) "kvWidth" (ternary 1 2 $fp8Kv) "atLoad" $fp8Weights "total" $total "utilization" $utilization "usable" (int64 (mulf (float64 $total) $utilization)) "reserve" 2147483648 "loadReserve" 2147483648 "context" (int64 $v.vllm.maxModelLen) "bytes" $bytes) -}}
{{- end -}}
{{- end -}}

{{/*
vllm.fitLayout: tpserve.plan.layout for TP × PP GPUs, as JSON: the heaviest stage's weights and load peak per
GPU, the KV cache bytes and tokens of the tightest stage, and which check fails ("" when it fits).
Input: dict "m" (vllm.fitModel) "tp" "pp".
*/}}
{{- define "vllm.fitLayout" -}}
{{- $m := .m -}}
{{- $tp := int64 .tp -}}
{{- $pp := int64 .pp -}}
{{- $hidden := int64 $m.hidden }}{{ $dim := int64 $m.headDim }}{{ $kv := int64 $m.kv }}{{ $width := int64 $m.width -}}
{{- $kvPerGpu := max 1 (div $kv $tp) -}}
{{- $replicated := mul 2 $hidden $dim (sub (mul $kvPerGpu $tp) $kv) $width -}}
{{- $perLayer := add (mul (int64 $m.layerLinear) $width) (mul (int64 $m.layerNorms) 2) $replicated -}}
{{- $base := div (int64 $m.layers) $pp }}{{ $rem := mod (int64 $m.layers) $pp -}}
{{- $usable := int64 $m.usable }}{{ $reserve := int64 $m.reserve -}}
{{- $heaviest := 0 }}{{ $tokens := -1 }}{{ $kvBytes := 0 -}}
{{- range $s := until (int $pp) -}}
{{- $layers := $base -}}
{{- if and (ge (int64 $s) (sub $pp (add 1 $rem))) (le (int64 $s) (sub $pp 2)) }}{{ $layers = add $layers 1 }}{{ end -}}
{{- $stage := mul $layers $perLayer -}}
{{- if eq $s 0 }}{{ $stage = add $stage (mul (int64 $m.embedding) 2) }}{{ end -}}
{{- if eq (int64 $s) (sub $pp 1) }}{{ $stage = add $stage (mul (add (int64 $m.embedding) $hidden) 2) }}{{ end -}}
{{- $weights := div (add $stage $tp -1) $tp -}}
{{- $free := max (sub (sub $usable $weights) $reserve) 0 -}}
{{- $count := mul (div (div $free (mul 2 $layers $kvPerGpu $dim (int64 $m.kvWidth))) 16) 16 -}}
{{- $heaviest = max $heaviest $weights -}}
{{- if or (lt $tokens 0) (lt $count $tokens) (and (eq $count $tokens) (lt $free $kvBytes)) }}{{ $tokens = $count }}{{ $kvBytes = $free }}{{ end -}}
{{- end -}}
{{- $module := 0 -}}
{{- if $m.atLoad -}}
{{- $heads := int64 $m.heads -}}
{{- $qkv := ternary (mul $hidden $dim (add (div $heads $tp) (mul 2 $kvPerGpu))) 0 (ge $heads $tp) -}}
{{- $gateUp := div (mul (sub (int64 $m.layerLinear) (mul $hidden $dim 2 (add $heads $kv))) 2) 3 -}}
{{- $module = mul 2 (max $qkv (div (add $gateUp $tp -1) $tp)) -}}
{{- end -}}
{{- $peak := add $heaviest $module -}}
{{- $problem := "" -}}
{{- if gt $heaviest $usable }}{{ $problem = "weights" -}}
{{- else if gt $peak (sub (int64 $m.total) (int64 $m.loadReserve)) }}{{ $problem = "load" -}}
{{- else if ge (add $heaviest $reserve) $usable }}{{ $problem = "kv" -}}
{{- else if and (gt (int64 $m.context) 0) (lt $tokens (int64 $m.context)) }}{{ $problem = "context" -}}
{{- end -}}
{{- toJson (dict "weights" $heaviest "peak" $peak "kvBytes" $kvBytes "tokens" $tokens "problem" $problem) -}}
{{- end -}}
