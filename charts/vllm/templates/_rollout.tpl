{{/*
vllm.terminationGraceSeconds is how long a stopping pod may take: preStop, then vLLM's drain
(--shutdown-timeout), then 30 s for its worker processes to exit.
*/}}
{{- define "vllm.terminationGraceSeconds" -}}
{{- add (int .Values.shutdown.preStopSeconds) (int .Values.shutdown.drainSeconds) 30 -}}
{{- end -}}

{{/*
vllm.progressDeadlineSeconds is how long a new pod may take to become ready before Kubernetes (and so
`kubectl rollout status` and `helm --wait`) calls the rollout failed: the download (fetch.maxSeconds), the
load (startup.maxLoadSeconds), the old pod's stop (it holds the GPUs the new one needs) and 600 s for
scheduling, volume attach and the image pull. Kubernetes' default of 600 s fails every first install.
*/}}
{{- define "vllm.progressDeadlineSeconds" -}}
{{- add (int .Values.fetch.maxSeconds) (include "vllm.maxLoadSeconds" . | int) (include "vllm.terminationGraceSeconds" . | int) 600 -}}
{{- end -}}

{{/*
vllm.maxLoadSeconds is startup.maxLoadSeconds, or when that is 0 the window derived from the model's size as
tpserve.startup.startup_window_seconds derives it (tests/chart pin the two): 1.5 × (250 s, the worst first start
measured besides reading, + the 16-bit checkpoint read at 150 MB/s); 1800 s without model.parameterBillions.
*/}}
{{- define "vllm.maxLoadSeconds" -}}
{{- $billions := float64 .Values.model.parameterBillions -}}
{{- if .Values.startup.maxLoadSeconds -}}{{ int .Values.startup.maxLoadSeconds }}
{{- else if $billions -}}{{ add 375 (div (add (round (mulf $billions 100) 0 | int) 4) 5) }}
{{- else -}}1800
{{- end -}}
{{- end -}}

{{/*
vllm.replicaProblems: every replica mounts the one cache claim, so several replicas need a claim several pods
can mount. The mode of cache.existingClaim is the user's business; a created ReadWriteOnce claim needs the
explicit cache.allowReadWriteOnceReplicas (which puts every replica on one node); ReadWriteOncePod never works.
*/}}
{{- define "vllm.replicaProblems" -}}
{{- $replicas := int (include "vllm.mostReplicas" .) -}}
{{- $what := ternary (printf "autoscaling.maxReplicas=%d" $replicas) (printf "replicaCount=%d" $replicas) .Values.autoscaling.enabled -}}
{{- $cache := .Values.cache -}}
{{- $problems := list -}}
{{- if and (gt $replicas 1) (not $cache.existingClaim) (not .Values.multiNode.enabled) -}}
{{- if eq $cache.accessMode "ReadWriteOncePod" -}}
{{- $problems = append $problems (printf "%s cannot share one cache claim of cache.accessMode=ReadWriteOncePod, which only one pod may mount: use ReadWriteMany, or cache.existingClaim" $what) -}}
{{- else if and (eq $cache.accessMode "ReadWriteOnce") (not $cache.allowReadWriteOnceReplicas) -}}
{{- $problems = append $problems (printf "%s needs cache.accessMode=ReadWriteMany: every replica mounts the same cache claim, which ReadWriteOnce lets only one node mount; or set cache.existingClaim to a claim they can all mount, or cache.allowReadWriteOnceReplicas=true to run every replica on one node" $what) -}}
{{- end -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}

{{/*
vllm.sameNode is "true" when the replicas share a ReadWriteOnce claim (cache.allowReadWriteOnceReplicas), which
only one node can mount: every replica must then run on that node.
*/}}
{{- define "vllm.sameNode" -}}
{{- and .Values.cache.allowReadWriteOnceReplicas (gt (int (include "vllm.mostReplicas" .)) 1) (not .Values.multiNode.enabled) -}}
{{- end -}}

{{/*
vllm.mostReplicas is the most servers the release may run: replicaCount, or autoscaling.maxReplicas while
autoscaling is on.
*/}}
{{- define "vllm.mostReplicas" -}}
{{- ternary .Values.autoscaling.maxReplicas .Values.replicaCount .Values.autoscaling.enabled | int -}}
{{- end -}}

{{/*
vllm.affinity is the user's affinity plus, where vllm.sameNode, a required pod affinity to the release's own
pods on the node (the first pod, matching itself, may go anywhere; the others follow it).
*/}}
{{- define "vllm.affinity" -}}
{{- $affinity := deepCopy .Values.affinity -}}
{{- if eq (include "vllm.sameNode" .) "true" -}}
{{- $podAffinity := get $affinity "podAffinity" | default dict -}}
{{- $required := get $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" | default list -}}
{{- $term := dict "labelSelector" (dict "matchLabels" (include "vllm.selectorLabels" . | fromYaml)) "topologyKey" "kubernetes.io/hostname" -}}
{{- $_ := set $podAffinity "requiredDuringSchedulingIgnoredDuringExecution" (append $required $term) -}}
{{- $_ = set $affinity "podAffinity" $podAffinity -}}
{{- end -}}
{{- with $affinity }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/*
vllm.strategy is the Deployment's update strategy. One replica is recreated: a new pod cannot get the GPUs the
old one holds, so a rolling update of one pod would wait forever. Several roll one at a time without a surge
pod (no spare GPUs are assumed), so the others keep serving: no full outage on upgrade.
*/}}
{{- define "vllm.strategy" -}}
{{- if gt (int (include "vllm.mostReplicas" .)) 1 -}}
# One pod at a time and no extra pod (no spare GPUs assumed); the other replicas serve meanwhile.
type: RollingUpdate
rollingUpdate:
  maxSurge: 0
  maxUnavailable: 1
{{- else -}}
# Recreate: a new pod cannot get the GPUs the old one holds, so a rolling update would wait forever.
type: Recreate
{{- end -}}
{{- end -}}
