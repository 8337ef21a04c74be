{{/*
vllm.settingsFlags are the flags vllm.settings adds to the official image's server (single-node, leader and
workers alike), from files/settings.json: src/tpserve/settings.py's table, written there by
tools/sync_chart_files.py. tuned: the entry for model.parameterBillions on GPUs of gpu.memoryGiB (the largest
GPU class they reach); fp8: those plus the table's fp8 flags; vllm: nothing. Nothing either while
gpu.memoryGiB is 0 (unknown), and no tuned entry while model.parameterBillions is 0. A flag in vllm.extraArgs
(dashes or underscores) wins: it is left out here. tpserve's image gets TPSERVE_SETTINGS instead, and
`tpserve serve` picks the same flags from config.json and the GPUs it sees.
*/}}
{{- define "vllm.settingsFlags" -}}
{{- $table := .Files.Get "files/settings.json" | fromJson -}}
{{- $profile := .Values.vllm.settings -}}
{{- $billions := float64 .Values.model.parameterBillions -}}
{{- $gib := float64 .Values.gpu.memoryGiB -}}
{{- $flags := dict -}}
{{- if and (ne $profile "vllm") (gt $gib 0.0) -}}
{{- $best := dict -}}
{{- range $table.entries -}}
{{- $max := .max_parameters_b -}}
{{- $sizeFits := and (gt $billions (float64 .min_parameters_b)) (or (kindIs "invalid" $max) (le $billions (float64 $max))) -}}
{{- if and $sizeFits (ge $gib (float64 .min_gpu_memory_gib)) (or (not $best) (gt (float64 .min_gpu_memory_gib) (float64 $best.min_gpu_memory_gib))) -}}
{{- $best = . -}}
{{- end -}}
{{- end -}}
{{- with $best }}{{ $flags = merge $flags .flags }}{{ end -}}
{{- if eq $profile "fp8" }}{{ $flags = merge $flags $table.fp8 }}{{ end -}}
{{- end -}}
{{- $given := dict -}}
{{- range $name, $_ := .Values.vllm.extraArgs }}{{ $_ := set $given (replace "_" "-" $name) true }}{{ end -}}
{{- range $name, $value := $flags }}
{{- if not (hasKey $given $name) }}
- {{ printf "--%s=%s" $name $value | quote }}
{{- end }}
{{- end }}
{{- end -}}
