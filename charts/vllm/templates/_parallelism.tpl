{{/*
vllm.parallelismProblems: TP must split the heads evenly (as vLLM requires), PP must not exceed the layers,
and TP × PP GPUs must fit on one node (multi-node layouts: vllm.multiNodeProblems); a layout that does not names
the fewest nodes vllm.multiNodeProblems would accept. Valid sizes are those of
tpserve.fetch.preflight.valid_tensor_parallel_sizes.
*/}}
{{- define "vllm.parallelismProblems" -}}
{{- $tp := int .Values.parallelism.tensor -}}
{{- $pp := int .Values.parallelism.pipeline -}}
{{- $heads := int .Values.model.attentionHeads -}}
{{- $kv := int .Values.model.kvHeads | default $heads -}}
{{- $problems := list -}}
{{- if gt $heads 0 -}}
{{- $valid := list -}}
{{- range $size := untilStep 1 65 1 -}}
{{- $kvOk := ternary (eq (mod $kv $size) 0) (eq (mod $size $kv) 0) (ge $kv $size) -}}
{{- if and (eq (mod $heads $size) 0) $kvOk }}{{ $valid = append $valid $size }}{{ end -}}
{{- end -}}
{{- if not (has $tp $valid) -}}
{{- $what := printf "model.attentionHeads=%d" $heads -}}
{{- if and .Values.model.kvHeads (ne $kv $heads) }}{{ $what = printf "%s and model.kvHeads=%d" $what $kv }}{{ end -}}
{{- $problems = append $problems (printf "parallelism.tensor=%d cannot split %s evenly: use one of %s" $tp $what (join ", " $valid)) -}}
{{- end -}}
{{- end -}}
{{- $layers := int .Values.model.layers -}}
{{- if and (gt $layers 0) (gt $pp $layers) -}}
{{- $problems = append $problems (printf "parallelism.pipeline=%d is more than model.layers=%d: every pipeline stage needs at least one layer, so lower it" $pp $layers) -}}
{{- end -}}
{{- $gpus := mul $tp $pp -}}
{{- if and (gt $gpus (int .Values.gpu.perNode)) (not .Values.multiNode.enabled) -}}
{{- $nodes := $gpus -}}
{{- range $n := untilStep (int $gpus) 1 -1 -}}
{{- $perPod := div $gpus $n -}}
{{- if and (eq (mod $gpus $n) 0) (le $perPod (int $.Values.gpu.perNode)) (or (eq (mod $tp $perPod) 0) (eq (mod $perPod $tp) 0)) }}{{ $nodes = $n }}{{ end -}}
{{- end -}}
{{- $problems = append $problems (printf "parallelism.tensor × parallelism.pipeline = %d × %d = %d GPUs, more than gpu.perNode=%d: one pod runs on one node, so spread the server over %d nodes with multiNode.enabled=true and multiNode.nodes=%d (docs/scale-out.md), lower the parallelism, or raise gpu.perNode if your nodes have more GPUs" $tp $pp $gpus (int .Values.gpu.perNode) $nodes $nodes) -}}
{{- end -}}
{{- $sizesValid := and (eq (include "vllm.isSize" .Values.shm.sizeLimit) "true") (eq (include "vllm.isSize" .Values.resources.memory) "true") -}}
{{- if and $sizesValid (ge (include "vllm.bytes" .Values.shm.sizeLimit | float64) (include "vllm.bytes" .Values.resources.memory | float64)) -}}
{{- $problems = append $problems (printf "shm.sizeLimit=%s does not fit in resources.memory=%s: /dev/shm is RAM charged to the pod, raise resources.memory or lower shm.sizeLimit" .Values.shm.sizeLimit .Values.resources.memory) -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}
