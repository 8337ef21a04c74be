{{/*
vllm.fullname names every object of a release: the release name, suffixed with the chart name unless
it already contains it, so `helm install llama70b` gives llama70b-vllm and `helm install vllm` gives vllm.
*/}}
{{- define "vllm.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
vllm.selectorLabels are the labels a release's Service and Deployment select pods by. They never change
over a release's life (a Deployment's selector is immutable), so no version goes in here.
*/}}
{{- define "vllm.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
vllm.labels go on every object and pod: the selector labels plus what identifies the versions.
*/}}
{{- define "vllm.labels" -}}
{{ include "vllm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
vllm.gpus is how many GPUs one server pod takes: one per tensor-parallel rank.
*/}}
{{- define "vllm.gpus" -}}
{{- .Values.parallelism.tensor | int -}}
{{- end -}}

{{/*
vllm.servedName is the model name clients send: model.servedName, or model.name when that is empty.
*/}}
{{- define "vllm.servedName" -}}
{{- .Values.model.servedName | default .Values.model.name -}}
{{- end -}}
