{{/*
The server container's command, arguments and environment, for both images:
- the official vLLM image runs vLLM's OpenAI server directly, on the folder the init container verified;
- tpserve's image (image.tpserve) runs `tpserve serve`, configured by TPSERVE_* variables, which repeats
  its launch checks (cache manifest, heads, visible GPUs, /dev/shm) and then execs the same server.
With a pinned revision the folder is known now and the command is exec-form. With a moving revision only
the init container knows the commit, so a shell reads the folder from the file it wrote and execs the
server (which stays PID 1 and gets SIGTERM itself).
*/}}

{{/*
vllm.fusionOffJson is vLLM's flag value that switches the fused all-reduce + RMSNorm off.
*/}}
{{- define "vllm.fusionOffJson" -}}
{"pass_config": {"fuse_allreduce_rms": false}}
{{- end -}}

{{/*
vllm.extraArgs renders vllm.extraArgs as --name=value lines: true is a bare flag, false is left out,
maps and lists become JSON, whole numbers never turn into 1e+06.
*/}}
{{- define "vllm.extraArgs" -}}
{{- range $name, $value := .Values.vllm.extraArgs }}
{{- if kindIs "bool" $value }}
{{- if $value }}
- {{ printf "--%s" $name | quote }}
{{- end }}
{{- else if or (kindIs "map" $value) (kindIs "slice" $value) }}
- {{ printf "--%s=%s" $name (toJson $value) | quote }}
{{- else if and (kindIs "float64" $value) (eq (floor $value) $value) }}
- {{ printf "--%s=%d" $name (int64 $value) | quote }}
{{- else }}
- {{ printf "--%s=%v" $name $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
vllm.serverFlags are the vLLM flags every server gets besides --model (official image only).
*/}}
{{- define "vllm.serverFlags" -}}
- --served-model-name
- {{ include "vllm.servedName" . | quote }}
- --tensor-parallel-size
- {{ .Values.parallelism.tensor | int | quote }}
- --pipeline-parallel-size
- {{ .Values.parallelism.pipeline | int | quote }}
- --dtype
{{- /* An fp8 KV cache (vllm.settings fp8) needs a bfloat16 model on Hopper (FlashAttention 3), as in tpserve serve. */}}
{{- $dtype := .Values.vllm.dtype }}
{{- if and (eq $dtype "auto") (contains "--kv-cache-dtype=fp8" (include "vllm.settingsFlags" .)) }}
{{- $dtype = "bfloat16" }}
{{- end }}
- {{ $dtype | quote }}
- --host
- "0.0.0.0"
- --port
- "8000"
{{- with .Values.vllm.maxModelLen }}
- --max-model-len
- {{ int . | quote }}
{{- end }}
{{- with .Values.vllm.gpuMemoryUtilization }}
- --gpu-memory-utilization
- {{ toString . | quote }}
{{- end }}
{{- if eq (include "vllm.fusionOff" .) "true" }}
- --compilation-config
- {{ include "vllm.fusionOffJson" . | quote }}
{{- end }}
{{- end -}}

{{/*
vllm.multiNodeFlags are the flags of vLLM's native multi-node launch (multiprocessing backend, no Ray):
every pod of a group runs the same server with its node rank; the leader (rank 0) serves the API and hosts
torch.distributed's store on multiNode.masterPort, the workers join it `--headless`. LWS_LEADER_ADDRESS and
LWS_WORKER_INDEX are set in each pod by the LeaderWorkerSet controller; the kubelet expands $(NAME).
Input: dict "root" "role".
*/}}
{{- define "vllm.multiNodeFlags" -}}
- --nnodes
- {{ .root.Values.multiNode.nodes | int | quote }}
- --node-rank
- {{ ternary "0" "$(LWS_WORKER_INDEX)" (eq .role "leader") | quote }}
- --master-addr
- "$(LWS_LEADER_ADDRESS)"
- --master-port
- {{ .root.Values.multiNode.masterPort | int | quote }}
{{- if eq .role "worker" }}
- --headless
{{- end }}
{{- end -}}

{{/*
vllm.serverCommand is the container's command and args. Input: dict "root" "role" (vllm.podSpec). The
multi-node roles run `vllm serve`, the only entry point with the headless worker mode (--headless is not
read by the api_server module the single-node path runs).
*/}}
{{- define "vllm.serverCommand" -}}
{{- $root := .root -}}
{{- $pinned := eq (include "vllm.pinned" $root) "true" -}}
{{- $readPath := printf "model=$(cat %s) && exec" (include "vllm.pathFile" $root) -}}
{{- $multiNode := ne .role "server" -}}
{{- $server := ternary (list "vllm" "serve") (list "python3" "-m" "vllm.entrypoints.openai.api_server") $multiNode -}}
{{- if $root.Values.image.tpserve }}
{{- if not $pinned }}
command: ["/bin/sh", "-c", {{ printf "%s tpserve serve --model \"$model\" \"$@\"" $readPath | quote }}, "tpserve"]
{{- end }}
args:
  - "--"
  - {{ printf "--shutdown-timeout=%d" (int $root.Values.shutdown.drainSeconds) | quote }}
  {{- with include "vllm.extraArgs" $root | trim }}
  {{- . | nindent 2 }}
  {{- end }}
{{- else }}
{{- if $pinned }}
command: [{{ range $i, $part := $server }}{{ if $i }}, {{ end }}{{ $part | quote }}{{ end }}]
{{- else }}
command: ["/bin/sh", "-c", {{ printf "%s %s --model \"$model\" \"$@\"" $readPath (join " " $server) | quote }}, "vllm"]
{{- end }}
args:
  {{- if $pinned }}
  - --model
  - {{ include "vllm.modelPath" $root | quote }}
  {{- end }}
  {{- include "vllm.serverFlags" $root | trim | nindent 2 }}
  - --shutdown-timeout
  - {{ $root.Values.shutdown.drainSeconds | int | quote }}
  {{- with include "vllm.settingsFlags" $root | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with include "vllm.extraArgs" $root | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- if $multiNode }}
  {{- include "vllm.multiNodeFlags" . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}
