{{/*
vllm.gatewayProblems: the InferencePool needs its endpoint picker and the HTTPRoute a Gateway.
*/}}
{{- define "vllm.gatewayProblems" -}}
{{- $g := .Values.gateway -}}
{{- $problems := list -}}
{{- if $g.enabled -}}
{{- if not $g.endpointPicker.name -}}
{{- $problems = append $problems "gateway.endpointPicker.name is empty: name the Service of the endpoint picker (EPP) deployed from the Gateway API inference extension, e.g. --set gateway.endpointPicker.name=vllm-epp" -}}
{{- end -}}
{{- if not $g.parentRefs -}}
{{- $problems = append $problems "gateway.parentRefs is empty: name the Gateway the HTTPRoute attaches to, e.g. --set gateway.parentRefs.inference-gateway.namespace=gateway" -}}
{{- end -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}
