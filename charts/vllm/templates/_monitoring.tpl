{{/*
Monitoring of a release (metrics.prometheusRule, metrics.dashboard; docs/monitoring.md): alerts and a dashboard
over the series Prometheus scrapes from the release's servers, selected by the namespace and service labels the
Prometheus Operator's ServiceMonitor sets, as vllm.metricQuery selects them for autoscaling.
*/}}

{{/*
vllm.metricSelector is the PromQL label matchers of the release's servers: namespace="<ns>",service="<fullname>".
*/}}
{{- define "vllm.metricSelector" -}}
{{- printf "namespace=%q,service=%q" .Release.Namespace (include "vllm.fullname" .) -}}
{{- end -}}

{{/*
vllm.alertAnnotations: summary, description and runbook_url of one alert. Input: dict "root" "alert" "summary"
"description". The runbook is the alert's heading in docs/monitoring.md under metrics.prometheusRule.runbookUrl.
*/}}
{{- define "vllm.alertAnnotations" -}}
{{- $release := printf "%s/%s" .root.Release.Namespace (include "vllm.fullname" .root) -}}
summary: {{ printf "%s (release %s)" .summary $release | quote }}
description: {{ .description | quote }}
runbook_url: {{ printf "%s#%s" .root.Values.metrics.prometheusRule.runbookUrl (lower .alert) | quote }}
{{- end -}}

{{/*
vllm.alertRules is the PrometheusRule's rules, one per alert (names fixed: dashboards, silences and runbooks
refer to them). Every query is scoped to the release by vllm.metricSelector, but TpserveFetchFailing's, which
reads kube-state-metrics (its series carry its own service label): the release's namespace, its pods by name
prefix and the fetch-model init container. vLLM's API server serves /metrics even while its engine process is
hung or stopped, with the last request gauges; only the token counter standing still shows it.
*/}}
{{- define "vllm.alertRules" -}}
{{- $r := .Values.metrics.prometheusRule -}}
{{- $s := include "vllm.metricSelector" . -}}
{{- $w := $r.rateWindow -}}
{{- $by := "by (namespace, service, pod)" -}}
{{- $fullname := include "vllm.fullname" . -}}
- alert: TpserveEngineStalled
  expr: |-
    (sum {{ $by }} (vllm:num_requests_running{ {{- $s -}} }) + sum {{ $by }} (vllm:num_requests_waiting{ {{- $s -}} })) > 0
    and on (namespace, service, pod)
    sum {{ $by }} (rate(vllm:generation_tokens_total{ {{- $s -}} }[{{ $w }}])) == 0
  for: {{ $r.engineStalled.for }}
  labels:
    severity: critical
  annotations:
    {{- include "vllm.alertAnnotations" (dict "root" . "alert" "TpserveEngineStalled"
      "summary" "vLLM server {{ $labels.pod }} has requests but generates no tokens"
      "description" (printf "{{ $labels.pod }} has had requests running or waiting and generated no token for %s: its engine process is hung, stopped or dead while the API server still answers. Check the pod's log for the engine's last lines and its GPUs (nvidia-smi); delete the pod to restart it." $w)) | nindent 4 }}
- alert: TpserveServerDown
  expr: up{ {{- $s -}} } == 0
  for: {{ $r.serverDown.for }}
  labels:
    severity: critical
  annotations:
    {{- include "vllm.alertAnnotations" (dict "root" . "alert" "TpserveServerDown"
      "summary" "vLLM server {{ $labels.pod }} does not answer Prometheus's scrapes"
      "description" "Prometheus cannot scrape {{ $labels.pod }}'s /metrics: the server is not running, still fetching or loading its weights, or hung. Check kubectl describe pod and the pod's log (fetch-model and vllm containers).") | nindent 4 }}
- alert: TpserveQueueGrowing
  expr: sum {{ $by }} (vllm:num_requests_waiting{ {{- $s -}} }) > {{ $r.queueGrowing.waiting }}
  for: {{ $r.queueGrowing.for }}
  labels:
    severity: warning
  annotations:
    {{- include "vllm.alertAnnotations" (dict "root" . "alert" "TpserveQueueGrowing"
      "summary" (printf "vLLM server {{ $labels.pod }} has more than %v requests waiting" $r.queueGrowing.waiting)
      "description" (printf "{{ $labels.pod }} has had more than %v requests waiting for a place in its batch for %s (now {{ $value }}): clients see a long time to first token. Add servers (replicaCount, or autoscaling.maxReplicas if the autoscaler is at its maximum) or check the KV-cache use." $r.queueGrowing.waiting $r.queueGrowing.for)) | nindent 4 }}
- alert: TpserveKVCacheFull
  expr: max {{ $by }} (vllm:kv_cache_usage_perc{ {{- $s -}} }) > {{ $r.kvCacheFull.usage }}
  for: {{ $r.kvCacheFull.for }}
  labels:
    severity: warning
  annotations:
    {{- include "vllm.alertAnnotations" (dict "root" . "alert" "TpserveKVCacheFull"
      "summary" "vLLM server {{ $labels.pod }} has its KV cache almost full"
      "description" (printf "{{ $labels.pod }} has used more than %v of its KV cache for %s (now {{ $value }}): new requests wait and running ones are preempted (vllm:num_preemptions_total). Add servers, lower the concurrency, or give the cache more memory (vllm.gpuMemoryUtilization, a lower vllm.maxModelLen)." $r.kvCacheFull.usage $r.kvCacheFull.for)) | nindent 4 }}
- alert: TpserveServerRestarting
  expr: max {{ $by }} (changes(process_start_time_seconds{ {{- $s -}} }[{{ $r.serverRestarting.window }}])) >= {{ $r.serverRestarting.restarts }}
  for: {{ $r.serverRestarting.for }}
  labels:
    severity: warning
  annotations:
    {{- include "vllm.alertAnnotations" (dict "root" . "alert" "TpserveServerRestarting"
      "summary" "vLLM server {{ $labels.pod }} is restarting"
      "description" (printf "{{ $labels.pod }}'s server process restarted {{ $value }} times in %s: each restart loads the model again. Check kubectl describe pod (OOMKilled, liveness probe) and the previous container's log (kubectl logs --previous)." $r.serverRestarting.window)) | nindent 4 }}
- alert: TpserveFetchFailing
  expr: |-
    sum by (namespace, pod) (increase(kube_pod_init_container_status_restarts_total{namespace={{ .Release.Namespace | quote }},pod=~{{ printf "%s-.+" $fullname | quote }},container="fetch-model"}[{{ $w }}])) > 0
    or
    max by (namespace, pod) (kube_pod_init_container_status_waiting_reason{namespace={{ .Release.Namespace | quote }},pod=~{{ printf "%s-.+" $fullname | quote }},container="fetch-model",reason="CrashLoopBackOff"}) == 1
  for: {{ $r.fetchFailing.for }}
  labels:
    severity: warning
  annotations:
    {{- include "vllm.alertAnnotations" (dict "root" . "alert" "TpserveFetchFailing"
      "summary" "The model fetch of pod {{ $labels.pod }} is failing"
      "description" "The fetch-model init container of {{ $labels.pod }} exited with an error and is being restarted, so the server cannot start. Its log names the fix (token, revision, disk space, network): kubectl logs {{ $labels.pod }} --container fetch-model --previous.") | nindent 4 }}
{{- end -}}
