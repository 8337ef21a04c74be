{{/*
Autoscaling on vLLM's own metrics (autoscaling.*): KEDA's ScaledObject asks Prometheus, the HPA reads External
metrics a metrics adapter serves. Both scale the workload through its /scale subresource: the Deployment, or
the LeaderWorkerSet (whose /scale counts groups and selects their leaders, the pods with the metrics).
*/}}

{{/*
vllm.scaleTargetRef is the workload the autoscaler scales.
*/}}
{{- define "vllm.scaleTargetRef" -}}
{{- if .Values.multiNode.enabled -}}
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
{{- else -}}
apiVersion: apps/v1
kind: Deployment
{{- end }}
name: {{ include "vllm.fullname" . }}
{{- end -}}

{{/*
vllm.metricQuery is the PromQL sum of a vLLM metric over the release's servers, as scraped through its
Service (the labels the Prometheus Operator's ServiceMonitor sets). Input: dict "root" "metric".
*/}}
{{- define "vllm.metricQuery" -}}
{{- printf "sum(%s{namespace=%q,service=%q})" .metric .root.Release.Namespace (include "vllm.fullname" .root) -}}
{{- end -}}

{{/*
vllm.autoscaledMetrics lists each scaling rule: name, vLLM metric, HPA external metric and per-server target.
*/}}
{{- define "vllm.autoscaledMetrics" -}}
{{- $a := .Values.autoscaling -}}
- name: waiting
  metric: {{ $a.metrics.waiting | quote }}
  external: {{ $a.hpa.waitingMetric | quote }}
  target: {{ toString $a.waitingPerReplica | quote }}
{{- if gt (float64 $a.kvCacheUsagePerReplica) 0.0 }}
- name: kv-cache-usage
  metric: {{ $a.metrics.kvCacheUsage | quote }}
  external: {{ $a.hpa.kvCacheUsageMetric | quote }}
  target: {{ toString $a.kvCacheUsagePerReplica | quote }}
{{- end }}
{{- end -}}

{{/*
vllm.autoscalingProblems: bounds that fit, and scale to zero only where it can work (KEDA).
*/}}
{{- define "vllm.autoscalingProblems" -}}
{{- $a := .Values.autoscaling -}}
{{- $problems := list -}}
{{- if $a.enabled -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- $problems = append $problems (printf "autoscaling.minReplicas=%d is above autoscaling.maxReplicas=%d: lower it or raise the maximum" (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- if and (eq (int $a.minReplicas) 0) (eq $a.engine "hpa") -}}
{{- $problems = append $problems "autoscaling.minReplicas=0 (scale to zero) needs autoscaling.engine=keda: an HPA cannot go below 1 replica without the alpha HPAScaleToZero feature gate; use engine keda, or minReplicas 1" -}}
{{- end -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}
