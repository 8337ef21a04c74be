{{/*
The in-cluster load test (loadtest.*): a Locust master Job, a worker Job, the master's headless Service and
NetworkPolicy. tpserve.measure.incluster picks them out of `helm template` by their component label and runs them.
*/}}

{{/*
vllm.loadtestLabels label a run's pods. They carry the test pod's selector labels, so the chart's
NetworkPolicy admits them to the server as it admits the `helm test` pod, and neither the Service nor the
Deployment ever selects them. Input: dict "root" $ "role" master|worker.
*/}}
{{- define "vllm.loadtestSelectorLabels" -}}
{{ include "vllm.testSelectorLabels" .root }}
app.kubernetes.io/component: {{ printf "loadtest-%s" .role }}
tpserve.io/loadtest-run: {{ toString .root.Values.loadtest.run | quote }}
{{- end -}}

{{- define "vllm.loadtestLabels" -}}
{{ include "vllm.loadtestSelectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
vllm.loadtestLayout is what the run measures, as the load test's --layout JSON: tpserve report groups by it.
*/}}
{{- define "vllm.loadtestLayout" -}}
{{- $device := "CPU (Kubernetes)" -}}
{{- if .Values.gpu.resource }}{{ $device = printf "%s (Kubernetes)" (.Values.gpu.product | default "GPU") }}{{ end -}}
{{- dict "model" .Values.model.name "device_kind" $device "tensor_parallel_size" (int .Values.parallelism.tensor) "pipeline_parallel_size" (int .Values.parallelism.pipeline) "replicas" (int .Values.replicaCount) | toJson -}}
{{- end -}}

{{/*
vllm.durationSeconds is a duration like 1h30m (the schema's runTime pattern: numbers with s, m or h) in seconds.
*/}}
{{- define "vllm.durationSeconds" -}}
{{- $units := dict "s" 1 "m" 60 "h" 3600 -}}
{{- $seconds := 0 -}}
{{- range $part := regexFindAll "[0-9]+[smh]" (toString .) -1 -}}
{{- $seconds = add $seconds (mul (regexFind "[0-9]+" $part | int) (get $units (regexFind "[smh]$" $part))) -}}
{{- end -}}
{{- $seconds -}}
{{- end -}}

{{/*
vllm.loadtestProblems: settings of loadtest.* that cannot work together, and a Job deadline that would cut
the run short (the master waits up to 600 s for its workers, --expect-workers-max-wait).
*/}}
{{- define "vllm.loadtestProblems" -}}
{{- $problems := list -}}
{{- with .Values.loadtest }}
{{- if and .enabled (lt (int .users) (int .workers)) }}
{{- $problems = append $problems (printf "loadtest.users (%d) is below loadtest.workers (%d): each worker needs at least one user; raise users or lower workers" (int .users) (int .workers)) -}}
{{- end }}
{{- if and .enabled (lt (int .numRequests) (int .workers)) }}
{{- $problems = append $problems (printf "loadtest.numRequests (%d) is below loadtest.workers (%d): each worker sends its share of the requests; send more or use fewer workers" (int .numRequests) (int .workers)) -}}
{{- end }}
{{- $runSeconds := int (include "vllm.durationSeconds" .runTime) -}}
{{- $needed := add (int .serverWaitSeconds) 600 $runSeconds -}}
{{- if and .enabled (lt (int .activeDeadlineSeconds) $needed) }}
{{- $problems = append $problems (printf "loadtest.activeDeadlineSeconds=%d would stop the run before it can end: loadtest.serverWaitSeconds=%d, the master's wait for its workers (600 s) and loadtest.runTime=%s (%d s) take up to %d s; raise it above that or shorten them" (int .activeDeadlineSeconds) (int .serverWaitSeconds) .runTime $runSeconds $needed) -}}
{{- end }}
{{- end }}
{{- toYaml $problems -}}
{{- end -}}

{{/*
vllm.loadPodSecurityContext is the pod security context of every pod running the load-test image (the helm
test with tests.runner=locust, the loadtest Jobs): that image's own user (docker/Dockerfile.loadtest ends with
USER 1000:1000), whatever the server's image is.
*/}}
{{- define "vllm.loadPodSecurityContext" -}}
runAsUser: 1000
runAsGroup: 1000
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}
