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
    {{- include "vllm.loadPodSecurityContext" $root | nindent 4 }}
  {{- with include "vllm.imagePullSecrets" $root }}
  {{- . | nindent 2 }}
  {{- end }}
  initContainers:
    # Locust starts only once the server answers /health: a first install loads the model for a long while,
    # and the workers give up on a master that is not there within 5 minutes. The wait ends after
    # loadtest.serverWaitSeconds with a message naming the server, so a server that never comes up fails the Job.
    - name: wait-for-server
      image: {{ include "vllm.image" $root.Values.tests.image | quote }}
      imagePullPolicy: IfNotPresent
      command:
        - python3
        - -c
        - |
          import sys, time, urllib.request
          release, limit, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
          deadline = time.monotonic() + limit
          while True:
              try:
                  urllib.request.urlopen(url, timeout=10).close()
                  break
              except Exception as exc:
                  left = deadline - time.monotonic()
                  if left <= 0:
                      sys.exit(f"the server at {url} did not answer within {limit} s (loadtest.serverWaitSeconds): "
                               f"check the release's server pods (kubectl get pods -l app.kubernetes.io/instance={release}), "
                               "then run again with another loadtest.run")
                  print(f"waiting for {url}: {exc}", flush=True)
                  time.sleep(min(10, left))
        - {{ $root.Release.Name | quote }}
        - {{ $root.Values.loadtest.serverWaitSeconds | int | toString | quote }}
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
