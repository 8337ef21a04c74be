{{/*
vllm.fitAlternatives: the layouts that would fit, as plan lists them: each tensor-parallel size that splits the
heads on one node, else pipeline stages across nodes (multiNode) at the largest of them.
Input: dict "m" "tp" "pp" "perNode".
*/}}
{{- define "vllm.fitAlternatives" -}}
{{- $m := .m }}{{ $heads := int64 $m.heads }}{{ $kv := int64 $m.kv -}}
{{- $valid := list }}{{ $fitting := list -}}
{{- range $size := untilStep 1 (int (add .perNode 1)) 1 -}}
{{- $kvOk := ternary (eq (mod $kv $size) 0) (eq (mod $size $kv) 0) (ge $kv (int64 $size)) -}}
{{- if and (eq (mod $heads $size) 0) $kvOk }}{{ $valid = append $valid $size -}}
{{- if not (include "vllm.fitLayout" (dict "m" $m "tp" $size "pp" 1) | fromJson).problem }}{{ $fitting = append $fitting (printf "parallelism.tensor=%d" $size) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if $fitting -}}
{{- $sizes := list }}{{ range $fitting }}{{ $sizes = append $sizes (trimPrefix "parallelism.tensor=" .) }}{{ end -}}
layouts that fit: parallelism.tensor={{ if eq (len $sizes) 1 }}{{ first $sizes }}{{ else }}{{ join ", " (initial $sizes) }} or {{ last $sizes }}{{ end }} with parallelism.pipeline=1
{{- else if $valid -}}
{{- $tp := last $valid }}{{ $found := 0 -}}
{{- range $pp := untilStep 2 (int (add (int64 $m.layers) 1)) 1 -}}
{{- if and (not $found) (not (include "vllm.fitLayout" (dict "m" $m "tp" $tp "pp" $pp) | fromJson).problem) }}{{ $found = $pp }}{{ end -}}
{{- end -}}
{{- if $found -}}
no layout on one node of gpu.perNode={{ .perNode }} fits: set multiNode.enabled=true with parallelism.tensor={{ $tp }} and parallelism.pipeline={{ $found }} ({{ mul $tp $found }} GPUs over {{ div (add (mul $tp $found) .perNode -1) .perNode }} nodes)
{{- else -}}
no layout fits these GPUs, even one layer per pipeline stage: use GPUs with more memory
{{- end -}}
{{- else -}}
no tensor-parallel size up to gpu.perNode={{ .perNode }} splits the heads
{{- end -}}
{{- end -}}

{{/*
vllm.gib: bytes as GiB with two decimals, as tpserve.plan.gib prints them.
*/}}
{{- define "vllm.gib" -}}
{{- printf "%.2f GiB" (divf (float64 .) 1073741824.0) -}}
{{- end -}}
