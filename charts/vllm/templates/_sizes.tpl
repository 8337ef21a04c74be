{{/*
vllm.sizeProblems: every size must have a unit (without one Kubernetes reads bytes, so "300" is 300 bytes)
and be at least its minimum, as Kubernetes reads the quantity (tests pin this to kubernetes.utils.parse_quantity).
Minimums: cache.size 1Gi, shm.sizeLimit 512Mi (vLLM's CPU backend maps 400 MiB at TP 1), scratch.sizeLimit
1Gi, resources.memory 4Gi (vLLM itself takes about 3.5 GiB), fetch.resources.memory 1Gi,
loadtest.resources.memory 256Mi (one Locust process). Each message's example is the value's default. The schema
accepts any string or number here, so this one line is what a user reads, not a regex.
*/}}
{{- define "vllm.sizeProblems" -}}
{{- $v := .Values -}}
{{- $sizes := list (list "cache.size" $v.cache.size "1Gi" "300Gi") (list "shm.sizeLimit" $v.shm.sizeLimit "512Mi" "16Gi") (list "scratch.sizeLimit" $v.scratch.sizeLimit "1Gi" "20Gi") (list "resources.memory" $v.resources.memory "4Gi" "96Gi") (list "fetch.resources.memory" $v.fetch.resources.memory "1Gi" "4Gi") (list "loadtest.resources.memory" $v.loadtest.resources.memory "256Mi" "1Gi") -}}
{{- $problems := list -}}
{{- range $size := $sizes -}}
{{- $name := index $size 0 -}}
{{- $value := index $size 1 | toString -}}
{{- $minimum := index $size 2 -}}
{{- if or (ne (include "vllm.isSize" $value) "true") (lt (include "vllm.bytes" $value | float64) (include "vllm.bytes" $minimum | float64)) -}}
{{- $problems = append $problems (printf "%s %q is not a size of at least %s: write a number with a binary (Mi, Gi, Ti) or decimal (M, G, T) unit, e.g. %s=%s; a number without a unit means bytes" $name $value $minimum $name (index $size 3)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}

{{/*
vllm.bytes is a Kubernetes quantity (16Gi, 500M, 1.5T) in bytes, for comparing sizes.
*/}}
{{- define "vllm.bytes" -}}
{{- $parts := regexFindAll "^[0-9.]+|[a-zA-Z]+$" (toString .) -1 -}}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- $unit := ternary (last $parts) "" (eq (len $parts) 2) -}}
{{- mulf (first $parts | float64) (get $units $unit | default 1.0) -}}
{{- end -}}

{{/*
vllm.isSize is "true" for a number with a binary or decimal unit (values.schema.json's $defs.size).
*/}}
{{- define "vllm.isSize" -}}
{{- regexMatch "^[0-9]+([.][0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)$" (toString .) -}}
{{- end -}}
