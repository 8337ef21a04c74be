{{/*
The `helm test` pod's scheduling (templates/tests/test-load.yaml).
*/}}

{{/*
vllm.testScheduling places the test pod. With tests.placement=server it gets the server's nodeSelector
(gpu.product included), tolerations and node affinity, so a tainted GPU pool admits it and a CPU node
does not pull the multi-GB serving image for it, and prefers a node that runs a server (a leader with
multiNode), whose disk already holds that image. Not the servers' pod (anti-)affinity, which is about
servers among themselves: a required anti-affinity to servers would keep it off every node that runs one.
Not the runtimeClassName: the test pod takes no GPU. With tests.placement=own: tests.nodeSelector,
tests.tolerations and tests.affinity.
*/}}
{{- define "vllm.testScheduling" -}}
{{- $nodeSelector := .Values.tests.nodeSelector -}}
{{- $tolerations := .Values.tests.tolerations -}}
{{- $affinity := .Values.tests.affinity -}}
{{- if eq .Values.tests.placement "server" -}}
{{- $nodeSelector = include "vllm.nodeSelector" . | fromYaml -}}
{{- $tolerations = .Values.tolerations -}}
{{- $nearServer := dict "weight" 100 "podAffinityTerm" (dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "vllm.servingSelectorLabels" . | fromYaml))) -}}
{{- $affinity = dict "podAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list $nearServer)) -}}
{{- with .Values.affinity.nodeAffinity }}{{ $_ := set $affinity "nodeAffinity" . }}{{ end -}}
{{- end -}}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
vllm.testProblems: the test pod's own scheduling values take effect only with tests.placement=own.
*/}}
{{- define "vllm.testProblems" -}}
{{- $problems := list -}}
{{- if eq .Values.tests.placement "server" }}
{{- range $value := list "nodeSelector" "tolerations" "affinity" }}
{{- if get $.Values.tests $value }}
{{- $problems = append $problems (printf "tests.%s is used only with tests.placement=own (server, the default, gives the test pod the server's scheduling): set tests.placement=own or remove it" $value) -}}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $problems -}}
{{- end -}}
