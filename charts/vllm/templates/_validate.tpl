{{/*
vllm.validateValues checks what the schema cannot: how values relate to each other and to the model.
It collects every problem and fails once with all of them, so one `helm install` shows everything to
fix. Messages name the value and the fix, and never echo a secret.
*/}}
{{- define "vllm.validateValues" -}}
{{- $v := .Values -}}
{{- $problems := list -}}
{{- $tokenPaths := include "vllm.tokenPaths" (dict "path" "" "value" $v) | trim -}}
{{- range $path := splitList "\n" $tokenPaths }}{{ if $path }}
{{- $problems = append $problems (printf "%s holds what looks like a Hugging Face token: values are stored in the release and shown by `helm get values`; put the token in a Secret and name it in hfToken.secretName" $path) -}}
{{- end }}{{ end -}}
{{- $problems = concat $problems (include "vllm.nameProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.modelProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.catalogProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.parallelismProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.multiNodeProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.replicaProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.autoscalingProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.gatewayProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.settingProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.sizeProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.imageProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.resourceProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.testProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.extensionProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.loadtestProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.fitProblems" . | fromYamlArray) -}}
{{- $problems = concat $problems (include "vllm.apiProblems" . | fromYamlArray) -}}
{{- $problems = uniq $problems -}}
{{- if $problems -}}
{{- fail (printf "\nthe values of chart vllm have %d problem(s); nothing was applied:\n- %s" (len $problems) (join "\n- " $problems)) -}}
{{- end -}}
{{- end -}}

{{/*
vllm.tokenPaths prints the path of every string in a values subtree that looks like a Hugging Face
token (hf_... or api_org_...), one per line. Input: dict "path" "value".
*/}}
{{- define "vllm.tokenPaths" -}}
{{- $path := .path -}}
{{- if kindIs "map" .value -}}
{{- range $key, $child := .value }}
{{ include "vllm.tokenPaths" (dict "path" (ternary $key (printf "%s.%s" $path $key) (eq $path "")) "value" $child) }}
{{- end -}}
{{- else if kindIs "slice" .value -}}
{{- range $index, $child := .value }}
{{ include "vllm.tokenPaths" (dict "path" (printf "%s[%d]" $path $index) "value" $child) }}
{{- end -}}
{{- else if and (kindIs "string" .value) (regexMatch "(hf_|api_org_)[A-Za-z0-9]{30,}" .value) -}}
{{ $path }}
{{- end -}}
{{- end -}}

{{/*
vllm.modelProblems: the model must be a repo id, pinned to a commit unless a moving revision is chosen.
*/}}
{{- define "vllm.modelProblems" -}}
{{- $model := .Values.model -}}
{{- $name := $model.name | default "" | toString -}}
{{- $revision := $model.revision | default "" | toString -}}
{{- $problems := list -}}
{{- if not $name -}}
{{- $problems = append $problems "model.name is empty: set it to the Hugging Face repo id to serve, e.g. --set model.name=meta-llama/Llama-2-7b-chat-hf" -}}
{{- else if or (not (regexMatch "^([A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]{1,96}$" $name)) (contains "--" $name) (contains ".." $name) -}}
{{- $problems = append $problems (printf "model.name %q is not a Hugging Face repo id: expected ORG/NAME, e.g. meta-llama/Llama-2-7b-chat-hf" $name) -}}
{{- end -}}
{{- if not $revision -}}
{{- $problems = append $problems "model.revision is empty: set the 40-hex commit sha to serve (the model page's \"Files and versions\" history lists them)" -}}
{{- else if and (not (regexMatch "^[0-9a-f]{40}$" $revision)) (not $model.allowMovingRevision) -}}
{{- $problems = append $problems (printf "model.revision %q is a branch or tag, so a restart could serve other weights: pin a 40-hex commit sha, or set model.allowMovingRevision=true to serve whatever it points to at each start" $revision) -}}
{{- end -}}
{{- if and .Values.multiNode.enabled $model.allowMovingRevision -}}
{{- $problems = append $problems "model.allowMovingRevision=true with multiNode.enabled=true: each pod of a group resolves the branch on its own, so the ranks of one server could load different commits; pin model.revision to a 40-hex commit sha" -}}
{{- end -}}
{{- if and .Values.fetch.offline $model.allowMovingRevision -}}
{{- $problems = append $problems "fetch.offline=true cannot resolve a branch or tag without the hub: pin model.revision to the 40-hex commit the claim was filled with and set model.allowMovingRevision=false" -}}
{{- end -}}
{{- range $value, $secret := dict "hfToken" .Values.hfToken "apiKey" .Values.apiKey }}
{{- with $secret.secretName }}
{{- if and (not (regexMatch "(hf_|api_org_)[A-Za-z0-9]{30,}" .)) (not (regexMatch "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$" .)) }}
{{- $problems = append $problems (printf "%s.secretName %q is not a Secret name (lowercase letters, digits, '-' and '.')" $value .) -}}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $problems -}}
{{- end -}}

{{/*
vllm.settingProblems: extra args and env must not fight the chart's own settings or carry secrets.
*/}}
{{- define "vllm.settingProblems" -}}
{{- $problems := list -}}
{{- $ownedFlags := dict "model" "model.name" "served-model-name" "model.servedName" "revision" "model.revision" "tensor-parallel-size" "parallelism.tensor" "pipeline-parallel-size" "parallelism.pipeline" "dtype" "vllm.dtype" "max-model-len" "vllm.maxModelLen" "gpu-memory-utilization" "vllm.gpuMemoryUtilization" "shutdown-timeout" "shutdown.drainSeconds" "host" "the chart (0.0.0.0)" "port" "the chart (8000; service.port is the Service's)" "nnodes" "multiNode.nodes" "node-rank" "the chart (each pod's LWS_WORKER_INDEX)" "master-addr" "the chart (the leader's LWS_LEADER_ADDRESS)" "master-port" "multiNode.masterPort" "headless" "the chart (on multiNode workers)" -}}
{{- range $flag, $_ := .Values.vllm.extraArgs }}
{{- if hasPrefix "-" $flag }}
{{- $problems = append $problems (printf "vllm.extraArgs.%s: write flags without leading dashes, e.g. enforce-eager: true" $flag) -}}
{{- else if eq $flag "api-key" }}
{{- $problems = append $problems "vllm.extraArgs.api-key would put the key on the command line, visible in the pod spec and process listings: put it in a Secret and set apiKey.secretName" -}}
{{- else if hasKey $ownedFlags $flag }}
{{- $problems = append $problems (printf "vllm.extraArgs.%s is set by the chart: use %s" $flag (get $ownedFlags $flag)) -}}
{{- end }}
{{- end }}
{{- if and (hasKey .Values.vllm.extraArgs "compilation-config") (eq (include "vllm.fusionOff" .) "true") }}
{{- $problems = append $problems "vllm.extraArgs.compilation-config and vllm.allreduceFusion=false both set --compilation-config: put \"pass_config\": {\"fuse_allreduce_rms\": false} inside yours and set vllm.allreduceFusion=true" -}}
{{- end }}
{{- $secretEnv := dict "HF_TOKEN" "hfToken.secretName" "HUGGING_FACE_HUB_TOKEN" "hfToken.secretName" "VLLM_API_KEY" "apiKey.secretName" "TPSERVE_API_KEY" "apiKey.secretName" -}}
{{- $ownedEnv := list "HOME" "USER" "HF_HOME" "HF_HUB_OFFLINE" "TRANSFORMERS_OFFLINE" "HF_MODULES_CACHE" "VLLM_CACHE_ROOT" "TRITON_CACHE_DIR" "FLASHINFER_WORKSPACE_BASE" "CUDA_CACHE_PATH" "VLLM_NO_USAGE_STATS" "DO_NOT_TRACK" "PYTHONUNBUFFERED" "PYTHONPATH" "PYTHONDONTWRITEBYTECODE" "HF_HUB_DISABLE_TELEMETRY" "HF_HUB_DISABLE_PROGRESS_BARS" "HF_XET_CACHE" "HF_XET_CHUNK_CACHE_SIZE_BYTES" "NVIDIA_VISIBLE_DEVICES" -}}
{{- range $value, $env := dict "vllm.extraEnv" .Values.vllm.extraEnv "fetch.extraEnv" .Values.fetch.extraEnv "multiNode.env" .Values.multiNode.env }}
{{- range $name, $_ := $env }}
{{- if hasKey $secretEnv $name }}
{{- $problems = append $problems (printf "%s.%s: secrets come only from a Secret the chart references; set %s" $value $name (get $secretEnv $name)) -}}
{{- else if or (has $name $ownedEnv) (hasPrefix "TPSERVE_" $name) }}
{{- $problems = append $problems (printf "%s.%s is set by the chart; remove it" $value $name) -}}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq .Values.probes.readinessPath "/v1/models") .Values.apiKey.secretName }}
{{- $problems = append $problems "probes.readinessPath=/v1/models answers 401 once apiKey.secretName is set, so the pod would never be ready: use /health" -}}
{{- end }}
{{- $product := get .Values.nodeSelector "nvidia.com/gpu.product" -}}
{{- if and .Values.gpu.product $product (ne $product .Values.gpu.product) }}
{{- $problems = append $problems (printf "gpu.product=%s contradicts nodeSelector nvidia.com/gpu.product=%s: set only one" .Values.gpu.product $product) -}}
{{- end }}
{{- range $label, $_ := include "vllm.selectorLabels" . | fromYaml }}
{{- if hasKey $.Values.podLabels $label }}
{{- $problems = append $problems (printf "podLabels.%s would change the labels the Service and Deployment select pods by: remove it" $label) -}}
{{- end }}
{{- end }}
{{- toYaml $problems -}}
{{- end -}}
