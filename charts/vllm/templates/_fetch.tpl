{{/*
vllm.fetchContainer is the init container: tpserve's fetch + verify (files/tpserve/, a link to
src/tpserve/fetch/, mounted from the fetch ConfigMap as a `tpserve` package) run by the serving image's own
Python and huggingface_hub. It downloads model.name at model.revision into the cache volume once (later starts
only verify it, without the network for a pinned commit), checks the parallelism and the model values
(--declared) against config.json, and writes the verified folder to the file the server's command reads.
With fetch.offline it downloads nothing and gets no token: it verifies the model pre-filled on the claim
in Hugging Face hub layout (vllm.hubCacheDir) and writes tpserve's manifest for it.
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
    {{- with include "vllm.declaredArgs" . | trim }}{{ . | nindent 4 }}{{ end }}
    {{- if .Values.model.allowMovingRevision }}
    - --allow-moving-revision
    {{- end }}
    {{- if .Values.fetch.offline }}
    - --offline
    - --from
    - {{ include "vllm.hubCacheDir" . | quote }}
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
    {{- include "vllm.xetEnv" . | trim | nindent 4 }}
    # No GPU for a download: where the NVIDIA runtime is the default, it would expose every GPU of the node.
    - name: NVIDIA_VISIBLE_DEVICES
      value: void
    {{- if .Values.fetch.offline }}
    - name: HF_HUB_OFFLINE
      value: "1"
    {{- else }}
    {{- with .Values.hfToken.secretName }}
    {{- include "vllm.secretEnv" (dict "name" "HF_TOKEN" "secret" . "key" $.Values.hfToken.secretKey "optional" true) | nindent 4 }}
    {{- end }}
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
      mountPath: /opt/tpserve-chart/tpserve
      readOnly: true
    {{- include "vllm.scratchMounts" . | nindent 4 }}
    - name: run
      mountPath: /run/tpserve
{{- end -}}

{{/*
vllm.scratchMounts are /tmp and HOME, each an emptyDir of its own (no subPath: a plain mount works on
every runtime, podman's included). The folder of the model-path file (/run/tpserve) is a third one,
writable only for the init container.
*/}}
{{- define "vllm.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/vllm
{{- end -}}

{{/*
vllm.volumes are the pod's volumes.
*/}}
{{- define "vllm.volumes" -}}
{{- /* multiNode without cache.existingClaim: the LeaderWorkerSet's claim template named cache is the volume. */}}
{{- if or .Values.cache.existingClaim (not .Values.multiNode.enabled) }}
- name: cache
  persistentVolumeClaim:
    claimName: {{ include "vllm.claimName" . | quote }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.scratch.sizeLimit | quote }}
- name: home
  emptyDir:
    sizeLimit: {{ .Values.scratch.sizeLimit | quote }}
- name: run
  emptyDir:
    sizeLimit: 1Mi
{{- /* Every key of the ConfigMap is a module file; mounted as the folder `tpserve` on PYTHONPATH. */}}
- name: fetch-code
  configMap:
    name: {{ printf "%s-fetch" (include "vllm.fullname" .) | quote }}
    defaultMode: 0444
{{- /* Always, whatever the parallelism: vLLM's CPU backend talks to its worker through /dev/shm even
at TP 1, and on GPUs at TP 1 features such as the shared-memory multimodal cache do (docs/chart.md). */}}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.shm.sizeLimit | quote }}
{{- end -}}

{{/*
vllm.claimSpec is the spec of the cache claim the chart creates: the release's claim, or with multiNode the
LeaderWorkerSet's claim template, one claim per pod.
*/}}
{{- define "vllm.claimSpec" -}}
accessModes:
  - {{ .Values.cache.accessMode }}
{{- /* Unset means the cluster's default StorageClass; only an explicit "-" asks for none. */}}
{{- if eq .Values.cache.storageClass "-" }}
storageClassName: ""
{{- else if .Values.cache.storageClass }}
storageClassName: {{ .Values.cache.storageClass | quote }}
{{- end }}
resources:
  requests:
    storage: {{ .Values.cache.size | quote }}
{{- end -}}
