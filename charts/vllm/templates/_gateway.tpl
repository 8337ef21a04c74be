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
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.namespaces (not $g.endpointPicker.podLabels) -}}
{{- $problems = append $problems "gateway.enabled=true with networkPolicy.namespaces restricting the sources would shut out the endpoint picker, which reads each server's /metrics: set gateway.endpointPicker.podLabels to its pods' labels (e.g. --set gateway.endpointPicker.podLabels.app=vllm-epp)" -}}
{{- end -}}
{{- if not $g.parentRefs -}}
{{- $problems = append $problems "gateway.parentRefs is empty: name the Gateway the HTTPRoute attaches to, e.g. --set gateway.parentRefs.inference-gateway.namespace=gateway" -}}
{{- end -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}

{{/*
vllm.gatewayNamespaces is the sorted list of namespaces of the Gateways in gateway.parentRefs (a Gateway without
one is in the release's namespace), where their proxies run.
*/}}
{{- define "vllm.gatewayNamespaces" -}}
{{- $namespaces := list -}}
{{- range $name, $ref := .Values.gateway.parentRefs -}}
{{- $namespaces = append $namespaces (($ref | default dict).namespace | default $.Release.Namespace) -}}
{{- end -}}
{{- $namespaces | uniq | sortAlpha | toYaml -}}
{{- end -}}
