{{/*
The environment of the server and init containers. Secrets only ever arrive through secretKeyRef.
*/}}

{{/*
vllm.tpserveEnv is the configuration of `tpserve serve` (README.md lists every variable).
*/}}
{{- define "vllm.tpserveEnv" -}}
- name: TPSERVE_MODEL
  value: {{ .Values.model.name | quote }}
- name: TPSERVE_REVISION
  value: {{ .Values.model.revision | quote }}
- name: TPSERVE_SERVED_MODEL_NAME
  value: {{ include "vllm.servedName" . | quote }}
- name: TPSERVE_TENSOR_PARALLEL_SIZE
  value: {{ .Values.parallelism.tensor | int | quote }}
- name: TPSERVE_PIPELINE_PARALLEL_SIZE
  value: {{ .Values.parallelism.pipeline | int | quote }}
- name: TPSERVE_DTYPE
  value: {{ .Values.vllm.dtype | quote }}
- name: TPSERVE_HOST
  value: "0.0.0.0"
- name: TPSERVE_PORT
  value: "8000"
- name: TPSERVE_CACHE_DIR
  value: {{ include "vllm.cacheDir" . | quote }}
- name: TPSERVE_SETTINGS
  value: {{ .Values.vllm.settings | quote }}
{{- if eq (include "vllm.fusionOff" .) "true" }}
- name: TPSERVE_ALLREDUCE_FUSION
  value: "false"
{{- end }}
{{- with .Values.vllm.maxModelLen }}
- name: TPSERVE_MAX_MODEL_LEN
  value: {{ int . | quote }}
{{- end }}
{{- with .Values.vllm.gpuMemoryUtilization }}
- name: TPSERVE_GPU_MEMORY_UTILIZATION
  value: {{ toString . | quote }}
{{- end }}
{{- end -}}

{{/*
vllm.userEnv renders a map of extra variables: a string is a value, a map is used as written (valueFrom).
*/}}
{{- define "vllm.userEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  {{- if kindIs "map" $value }}
  {{- toYaml $value | nindent 2 }}
  {{- else }}
  value: {{ toString $value | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
vllm.serverEnv is the server container's environment. The server never gets HF_TOKEN: it reads only the
verified folder, offline. Input: dict "root" "role" (vllm.podSpec). The multi-node roles also get their pod's
IP as VLLM_HOST_IP (the address vLLM publishes to the group; its own guess needs a default route) and
multiNode.env (NCCL and Gloo settings of the fabric).
*/}}
{{- define "vllm.serverEnv" -}}
{{- $root := .root -}}
{{- include "vllm.baseEnv" $root }}
- name: HF_HUB_OFFLINE
  value: "1"
- name: TRANSFORMERS_OFFLINE
  value: "1"
# Code of trust-remote-code models goes to HOME: the weights are mounted read-only.
- name: HF_MODULES_CACHE
  value: /home/vllm/.cache/huggingface/modules
- name: VLLM_CACHE_ROOT
  value: /models/vllm-cache
# The kernels Triton, FlashInfer and the CUDA driver compile at the engine's warm-up go on the claim too: under
# HOME (an emptyDir) every new pod compiled them again, 84-91 s of a 155-160 s start on an H100
# (results/20261206-h100x1-ready). Their keys include the library version and the GPU architecture.
- name: TRITON_CACHE_DIR
  value: /models/vllm-cache/jit/triton
- name: FLASHINFER_WORKSPACE_BASE
  value: /models/vllm-cache/jit/flashinfer
- name: CUDA_CACHE_PATH
  value: /models/vllm-cache/jit/cuda
- name: VLLM_NO_USAGE_STATS
  value: "1"
- name: DO_NOT_TRACK
  value: "1"
{{- if $root.Values.image.tpserve }}
{{- include "vllm.tpserveEnv" $root | nindent 0 }}
{{- end }}
{{- with $root.Values.apiKey.secretName }}
{{- include "vllm.secretEnv" (dict "name" "VLLM_API_KEY" "secret" . "key" $root.Values.apiKey.secretKey "optional" false) | nindent 0 }}
{{- end }}
{{- if ne .role "server" }}
- name: VLLM_HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- include "vllm.userEnv" $root.Values.multiNode.env }}
{{- end }}
{{- include "vllm.userEnv" $root.Values.vllm.extraEnv }}
{{- end -}}

{{/*
vllm.baseEnv is what both containers need to run as the image's uid (vllm.imageUid) on a read-only root
filesystem: a writable HOME on a scratch volume (Triton, FlashInfer, CUDA, numba and outlines keep caches
under it, XDG's ~/.cache included; the official image's root-owned /root and WORKDIR /vllm-workspace are
never written), a USER name for getpass (the uid may have no passwd entry in the image: older official
builds have none, newer ones name uid 2000 `vllm` with this same home), and HF_HOME on the cache volume.
*/}}
{{- define "vllm.baseEnv" -}}
- name: HOME
  value: /home/vllm
- name: USER
  value: vllm
- name: HF_HOME
  value: /models/hf
- name: PYTHONUNBUFFERED
  value: "1"
{{- end -}}
