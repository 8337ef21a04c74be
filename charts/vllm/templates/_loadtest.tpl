{{/*
The in-cluster load test (loadtest.*): a Locust master Job, a worker Job, the master's headless Service and
NetworkPolicy. tpserve.kubeload picks them out of `helm template` by their component label and runs them.
*/}}

{{/*
vllm.loadtestName is the prefix of a run's objects: <fullname>-loadtest-<run>, cut so "-master" fits 63.
*/}}
{{- define "vllm.loadtestName" -}}
{{- printf "%s-loadtest-%s" (include "vllm.fullname" .) (toString .Values.loadtest.run) | trunc 56 | trimSuffix "-" -}}
{{- end -}}

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
vllm.loadtestJobAnnotations are checkov's waivers, true of the load-test Jobs only.
*/}}
{{- define "vllm.loadtestJobAnnotations" -}}
checkov.io/skip1: CKV_K8S_8=A load-test Job runs to completion; a liveness probe has nothing to restart
checkov.io/skip2: CKV_K8S_9=No Service routes clients to a load-test pod, so readiness means nothing
{{- end -}}

{{/*
vllm.loadtestPod is the pod template of the master (role master) and the workers (role worker): the
load-test image's own user (docker/Dockerfile.loadtest ends with USER 1000:1000), non-root on a read-only
root filesystem without capabilities, and the API key, when the server has one, from its Secret.
Input: dict "root" $ "role" master|worker "args" (list) "env" (list of {name, value}).
*/}}
{{- define "vllm.loadtestPod" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "vllm.loadtestLabels" . | nindent 4 }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    runAsUser: 1000
    runAsGroup: 1000
    runAsNonRoot: true
    seccompProfile:
      type: RuntimeDefault
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . | quote }}
    {{- end }}
  {{- end }}
  initContainers:
    # Locust starts only once the server answers /health: a first install loads the model for a long while,
    # and the workers give up on a master that is not there within 5 minutes.
    - name: wait-for-server
      image: {{ include "vllm.image" $root.Values.tests.image | quote }}
      imagePullPolicy: IfNotPresent
      command:
        - python3
        - -c
        - |
          import sys, time, urllib.request
          while True:
              try:
                  urllib.request.urlopen(sys.argv[1], timeout=10).close()
                  break
              except Exception as exc:
                  print(f"waiting for {sys.argv[1]}: {exc}", flush=True)
                  time.sleep(10)
        - {{ printf "http://%s:%d/health" (include "vllm.fullname" $root) (int $root.Values.service.port) | quote }}
      resources:
        requests:
          cpu: 100m
          memory: 64Mi
        limits:
          cpu: 100m
          memory: 64Mi
      securityContext:
        {{- include "vllm.securityContext" $root | nindent 8 }}
  containers:
    - name: {{ .role }}
      image: {{ include "vllm.image" $root.Values.tests.image | quote }}
      imagePullPolicy: IfNotPresent
      args:
        {{- toYaml .args | nindent 8 }}
      env:
        - name: HOME
          value: /tmp
        {{- range .env }}
        - name: {{ .name }}
          value: {{ .value | quote }}
        {{- end }}
        {{- with $root.Values.apiKey.secretName }}
        {{- include "vllm.secretEnv" (dict "name" "TPSERVE_API_KEY" "secret" . "key" $root.Values.apiKey.secretKey "optional" false) | nindent 8 }}
        {{- end }}
      {{- if eq .role "master" }}
      ports:
        - name: locust
          containerPort: 5557
          protocol: TCP
      {{- end }}
      resources:
        requests:
          cpu: {{ $root.Values.loadtest.resources.cpu | quote }}
          memory: {{ $root.Values.loadtest.resources.memory | quote }}
        limits:
          cpu: {{ $root.Values.loadtest.resources.cpu | quote }}
          memory: {{ $root.Values.loadtest.resources.memory | quote }}
      securityContext:
        {{- include "vllm.securityContext" $root | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: results
          mountPath: /results
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    - name: results
      emptyDir:
        sizeLimit: 1Gi
{{- end -}}

{{/*
vllm.loadtestProblems: settings of loadtest.* that cannot work together.
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
{{- end }}
{{- toYaml $problems -}}
{{- end -}}
