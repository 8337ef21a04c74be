{{/*
The server pod, shared by the Deployment (one node) and the LeaderWorkerSet (multiNode): the same init
container, secrets, security contexts, /dev/shm, scratch and extra volumes for every role. Input:
dict "root" (the chart's context) "role": "server" (Deployment), "leader" or "worker" (LeaderWorkerSet).
Only the server container's command and probes differ by role (vllm.serverContainer).
*/}}
{{- define "vllm.podSpec" -}}
{{- $root := .root -}}
automountServiceAccountToken: false
# A Service named vllm would otherwise inject VLLM_PORT=tcp://..., which vLLM reads as its own setting.
enableServiceLinks: false
# preStop, then vLLM's drain (--shutdown-timeout), then 30 s for its worker processes to exit.
terminationGracePeriodSeconds: {{ include "vllm.terminationGraceSeconds" $root }}
securityContext:
  {{- include "vllm.podSecurityContext" $root | nindent 2 }}
{{- with include "vllm.imagePullSecrets" $root }}
{{ . }}
{{- end }}
{{- with $root.Values.runtimeClassName }}
runtimeClassName: {{ . | quote }}
{{- end }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
initContainers:
  {{- include "vllm.fetchContainer" $root | nindent 2 }}
containers:
  {{- include "vllm.serverContainer" . | nindent 2 }}
volumes:
  {{- include "vllm.volumes" $root | nindent 2 }}
  {{- include "vllm.extraVolumes" $root | nindent 2 }}
{{- with include "vllm.nodeSelector" $root }}
nodeSelector:
  {{- . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "vllm.affinity" $root }}
affinity:
  {{- . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
vllm.podMetadata is the pod template's labels and annotations.
*/}}
{{- define "vllm.podMetadata" -}}
labels:
  {{- include "vllm.podLabels" . | nindent 2 }}
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # A new fetch or probe script restarts the pod, like any other change of the pod spec.
  checksum/fetch-code: {{ (.Files.Glob "files/{tpserve,check}/*.py").AsConfig | sha256sum }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
vllm.imagePullSecrets is a pod's imagePullSecrets from the values (nothing when there are none). Input: the
chart's context.
*/}}
{{- define "vllm.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end -}}
