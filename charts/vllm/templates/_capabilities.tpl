{{/*
vllm.apiProblems refuses each custom resource the values ask for whose API the cluster does not serve, naming
the controller that brings it: applied without its CRD, the object would fail at apply time, outside this
chart's problem list, after the other objects were created. `helm install` and `helm upgrade` see the cluster's
APIs; `helm template` sees only what --api-versions names; `helm install --dry-run=client` sees neither, hence
requireAPIs=false for it. (`helm lint` only logs a template's fail.)
*/}}
{{- define "vllm.apiProblems" -}}
{{- $problems := list -}}
{{- if .Values.requireAPIs -}}
{{- $wanted := list -}}
{{- if .Values.multiNode.enabled -}}
{{- $wanted = append $wanted (list "multiNode.enabled=true" "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet" "the LeaderWorkerSet controller (https://lws.sigs.k8s.io/docs/installation/)") -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (eq .Values.autoscaling.engine "keda") -}}
{{- $wanted = append $wanted (list "autoscaling.enabled=true" "keda.sh/v1alpha1/ScaledObject" "KEDA (helm install keda kedacore/keda --namespace keda --create-namespace, https://keda.sh/docs/deploy/)") -}}
{{- end -}}
{{- if .Values.gateway.enabled -}}
{{- $wanted = append $wanted (list "gateway.enabled=true" "inference.networking.k8s.io/v1/InferencePool" "the Gateway API Inference Extension's CRDs (https://gateway-api-inference-extension.sigs.k8s.io/guides/)") -}}
{{- $wanted = append $wanted (list "gateway.enabled=true" "gateway.networking.k8s.io/v1/HTTPRoute" "the Gateway API's CRDs (https://gateway-api.sigs.k8s.io/guides/#installing-gateway-api) and a Gateway implementation") -}}
{{- end -}}
{{- if .Values.metrics.serviceMonitor.enabled -}}
{{- $wanted = append $wanted (list "metrics.serviceMonitor.enabled=true" "monitoring.coreos.com/v1/ServiceMonitor" "the Prometheus Operator (e.g. the kube-prometheus-stack chart), or scrape /metrics without it") -}}
{{- end -}}
{{- if .Values.metrics.prometheusRule.enabled -}}
{{- $wanted = append $wanted (list "metrics.prometheusRule.enabled=true" "monitoring.coreos.com/v1/PrometheusRule" "the Prometheus Operator (e.g. the kube-prometheus-stack chart), or load the rules into Prometheus yourself (docs/monitoring.md)") -}}
{{- end -}}
{{- range $want := $wanted -}}
{{- $api := index $want 1 -}}
{{- if not ($.Capabilities.APIVersions.Has $api) -}}
{{- $problems = append $problems (printf "%s renders a %s (%s), which this cluster does not serve: install %s. For helm template without a cluster pass --api-versions %s; helm install --dry-run=client needs --set requireAPIs=false" (index $want 0) (base $api) (dir $api) (index $want 2) $api) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}
