{{/*
vllm.fetchContainer is the init container: tpserve's fetch + verify (files/tpserve/, byte-identical to
src/tpserve/, mounted from the fetch ConfigMap as a `tpserve` package) run by the serving image's own
Python and huggingface_hub. It downloads model.name at model.revision into the cache volume once
(later starts only verify it, without the network for a pinned commit), checks the parallelism against
config.json, and writes the verified folder to the pod-local file the server's command reads.
*/}}
{{- define "vllm.fetchContainer" -}}
- name: fetch-model
  image: {{ include "vllm.image" .Values.image | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["python3", "-m", "tpserve.fetchjob"]
  args:
    - --model
    - {{ .Values.model.name | quote }}
    - --revision
    - {{ .Values.model.revision | quote }}
    - --cache-dir
    - {{ include "vllm.cacheDir" . | quote }}
    - --tensor-parallel-size
    - {{ .Values.parallelism.tensor | int | quote }}
    - --pipeline-parallel-size
    - {{ .Values.parallelism.pipeline | int | quote }}
    - --path-file
    - {{ include "vllm.pathFile" . | quote }}
    - --mkdir
    - /models/vllm-cache
    {{- if .Values.model.allowMovingRevision }}
    - --allow-moving-revision
    {{- end }}
  env:
    {{- include "vllm.baseEnv" . | nindent 4 }}
    - name: PYTHONPATH
      value: /opt/tpserve-chart
    - name: PYTHONDONTWRITEBYTECODE
      value: "1"
    - name: HF_HUB_DISABLE_TELEMETRY
      value: "1"
    - name: HF_HUB_DISABLE_PROGRESS_BARS
      value: "1"
    # Xet's chunk cache (10 GB by default) would fill the scratch volume; the weights are the cache.
    - name: HF_XET_CACHE
      value: /tmp/hf-xet
    - name: HF_XET_CHUNK_CACHE_SIZE_BYTES
      value: "0"
    # No GPU for a download: where the NVIDIA runtime is the default, it would expose every GPU of the node.
    - name: NVIDIA_VISIBLE_DEVICES
      value: void
    {{- with .Values.hfToken.secretName }}
    {{- include "vllm.secretEnv" (dict "name" "HF_TOKEN" "secret" . "key" $.Values.hfToken.secretKey "optional" true) | nindent 4 }}
    {{- end }}
    {{- with .Values.fetch.extraEnv }}
    {{- include "vllm.userEnv" . | trim | nindent 4 }}
    {{- end }}
  resources:
    requests:
      cpu: {{ .Values.fetch.resources.cpu | quote }}
      memory: {{ .Values.fetch.resources.memory | quote }}
    limits:
      memory: {{ .Values.fetch.resources.memory | quote }}
  securityContext:
    {{- include "vllm.securityContext" . | nindent 4 }}
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
    - name: cache
      mountPath: /models
    - name: fetch-code
      mountPath: /opt/tpserve-chart
      readOnly: true
    {{- include "vllm.scratchMounts" . | nindent 4 }}
    - name: scratch
      mountPath: /run/tpserve
      subPath: run
{{- end -}}

{{/*
vllm.scratchMounts are /tmp and HOME on the scratch emptyDir; the folder of the model-path file
(/run/tpserve) is on it too, writable only for the init container.
*/}}
{{- define "vllm.scratchMounts" -}}
- name: scratch
  mountPath: /tmp
  subPath: tmp
- name: scratch
  mountPath: /home/vllm
  subPath: home
{{- end -}}

{{/*
vllm.volumes are the pod's volumes.
*/}}
{{- define "vllm.volumes" -}}
- name: cache
  persistentVolumeClaim:
    claimName: {{ include "vllm.claimName" . | quote }}
- name: scratch
  emptyDir:
    sizeLimit: {{ .Values.scratch.sizeLimit | quote }}
- name: fetch-code
  configMap:
    name: {{ printf "%s-fetch" (include "vllm.fullname" .) | quote }}
    defaultMode: 0444
    items:
      {{- range $path, $_ := .Files.Glob "files/tpserve/*.py" }}
      - key: {{ base $path }}
        path: {{ printf "tpserve/%s" (base $path) }}
      {{- end }}
{{- if gt (include "vllm.gpus" . | int) 1 }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.shm.sizeLimit | quote }}
{{- end }}
{{- end -}}
