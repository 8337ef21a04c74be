{{/*
vllm.serverContainer is the vLLM container. The server and the leader serve HTTP on port 8000 and are
probed there; a worker (multiNode, `--headless`) serves no HTTP, so it has no probes: when its engine
processes die it exits, and the LeaderWorkerSet's RecreateGroupOnPodRestart restarts the whole group.
The leader's /health does not cover the group: with a worker lost it stays 200 while the leader's requests
make no progress (measured, docs/scale-out.md), so liveness is files/check/progress_probe.py, which also
fails on running requests whose token counters stop (probes.stallSeconds). Input: dict "root" "role".
*/}}
{{- define "vllm.serverContainer" -}}
{{- $root := .root -}}
{{- $gpus := include "vllm.gpus" $root | int -}}
{{- $preStop := int $root.Values.shutdown.preStopSeconds -}}
- name: vllm
  image: {{ include "vllm.image" $root.Values.image | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  {{- include "vllm.serverCommand" . | trim | nindent 2 }}
  env:
    {{- include "vllm.serverEnv" . | nindent 4 }}
  {{- if ne .role "worker" }}
  ports:
    - name: http
      containerPort: 8000
      protocol: TCP
    {{- if eq .role "leader" }}
    - name: dist
      containerPort: {{ $root.Values.multiNode.masterPort }}
      protocol: TCP
    {{- end }}
  # Loading (not downloading: the init container did that) may take startup.maxLoadSeconds.
  startupProbe:
    httpGet:
      path: /health
      port: http
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: {{ divf (include "vllm.maxLoadSeconds" $root | int) 10 | ceil | int }}
  readinessProbe:
    httpGet:
      path: {{ $root.Values.probes.readinessPath }}
      port: http
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  # The budgets live in the script, which remembers what it saw in /tmp between runs; two failed runs restart.
  livenessProbe:
    exec:
      command:
        - python3
        - /opt/tpserve-chart/check/progress_probe.py
        - --state
        - /tmp/tpserve-progress-probe.json
        - --unhealthy-seconds
        - {{ $root.Values.probes.livenessFailureSeconds | int | quote }}
        - --stall-seconds
        - {{ $root.Values.probes.stallSeconds | int | quote }}
    periodSeconds: 30
    timeoutSeconds: 20
    failureThreshold: 2
  {{- end }}
  {{- /* A worker takes no requests: nothing to keep serving while endpoints update. */}}
  {{- if and (gt $preStop 0) (ne .role "worker") }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", {{ $preStop | quote }}]
  {{- end }}
  resources:
    requests:
      cpu: {{ $root.Values.resources.cpu | quote }}
      memory: {{ $root.Values.resources.memory | quote }}
      ephemeral-storage: {{ include "vllm.ephemeralStorage" $root | quote }}
      {{- with $root.Values.gpu.resource }}
      {{ . }}: {{ $gpus }}
      {{- end }}
      {{- with include "vllm.extraResources" $root }}
      {{- . | nindent 6 }}
      {{- end }}
    limits:
      memory: {{ $root.Values.resources.memory | quote }}
      {{- with $root.Values.gpu.resource }}
      {{ . }}: {{ $gpus }}
      {{- end }}
      {{- with include "vllm.extraResources" $root }}
      {{- . | nindent 6 }}
      {{- end }}
  securityContext:
    {{- include "vllm.securityContext" $root | nindent 4 }}
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
    # The verified weights, read-only: the server cannot change what the manifest vouches for.
    - name: cache
      mountPath: /models/hf
      subPath: hf
      readOnly: true
    - name: cache
      mountPath: /models/vllm-cache
      subPath: vllm-cache
    {{- include "vllm.scratchMounts" $root | nindent 4 }}
    - name: run
      mountPath: /run/tpserve
      readOnly: true
    {{- if ne .role "worker" }}
    # The liveness probe's script (files/check/, in the fetch ConfigMap).
    - name: fetch-code
      mountPath: /opt/tpserve-chart/check
      readOnly: true
    {{- end }}
    - name: dshm
      mountPath: /dev/shm
    {{- with include "vllm.extraVolumeMounts" $root | trim }}
    {{- . | nindent 4 }}
    {{- end }}
{{- end -}}
