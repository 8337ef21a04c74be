{{/*
vllm.catalogProblems: for a model.name of tpserve's catalog (files/models.json, written from src/tpserve/catalog.py
by tools/sync_chart_files.py), the model values the chart sizes, validates and tunes by must be that model's.
Left at the chart's defaults (Llama-2-70b's) after changing the name, they would plan another model. Names
outside the catalog are checked by the init container against the fetched config.json (fetchjob --declared).
*/}}
{{- define "vllm.catalogProblems" -}}
{{- $problems := list -}}
{{- $catalog := .Files.Get "files/models.json" | fromJson -}}
{{- $entry := get $catalog (.Values.model.name | default "" | toString | lower) -}}
{{- if $entry -}}
{{- $wrong := list -}}
{{- $fix := list -}}
{{- range $name := list "attentionHeads" "kvHeads" "layers" "parameterBillions" "hiddenSize" "vocabSize" -}}
{{- $value := get $.Values.model $name -}}
{{- $truth := get $entry $name -}}
{{- $fix = append $fix (printf "--set model.%s=%v" $name $truth) -}}
{{- if and $value (ne (printf "%v" $value) (printf "%v" $truth)) -}}
{{- $wrong = append $wrong (printf "model.%s=%v (catalog: %v)" $name $value $truth) -}}
{{- end -}}
{{- end -}}
{{- if $wrong -}}
{{- $problems = append $problems (printf "model.name=%s is %s in the chart's catalog, whose config.json the model values contradict: %s: set %s" .Values.model.name $entry.name (join ", " $wrong) (join " " $fix)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}

{{/*
vllm.declaredArgs are the init container's --declared arguments: each model value that is set (not 0), which
it checks against the fetched config.json before the server starts.
*/}}
{{- define "vllm.declaredArgs" -}}
{{- range $name := list "attentionHeads" "kvHeads" "layers" "parameterBillions" "hiddenSize" "vocabSize" }}{{ with get $.Values.model $name }}
- --declared
- {{ printf "model.%s=%v" $name . | quote }}
{{- end }}{{ end }}
{{- end -}}
