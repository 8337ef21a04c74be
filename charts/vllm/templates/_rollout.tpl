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
{{- add (int .Values.fetch.maxSeconds) (int .Values.startup.maxLoadSeconds) (include "vllm.terminationGraceSeconds" . | int) 600 -}}
{{- end -}}
