{{/*
vllm.name is the chart's name in labels and object names: nameOverride, or the chart name.
*/}}
{{- define "vllm.name" -}}
{{- regexReplaceAll "-+$" (.Values.nameOverride | default .Chart.Name | trunc 63) "" -}}
{{- end -}}

{{/*
vllm.fullname names every object of a release: fullnameOverride when set; otherwise the release name,
suffixed with vllm.name unless it already contains it, so `helm install llama70b` gives llama70b-vllm and
`helm install vllm` gives vllm. Dots of a release name become dashes and a release name that starts with a
digit comes after vllm.name (`helm install 7b` gives vllm-7b), since Services need a DNS-1035 label;
vllm.nameProblems refuses what still is not one. tpserve.measure.kubernetes.fullname is the same rule in Python
(tests/chart pin them).
*/}}
{{- define "vllm.fullname" -}}
{{- $name := include "vllm.name" . -}}
{{- $release := replace "." "-" .Release.Name -}}
{{- $full := .Values.fullnameOverride -}}
{{- if not $full -}}
{{- $full = ternary $release (printf "%s-%s" $release $name) (contains $name $release) -}}
{{- if regexMatch "^[0-9]" $release }}{{ $full = printf "%s-%s" $name $release }}{{ end -}}
{{- end -}}
{{- regexReplaceAll "-+$" ($full | trunc 63) "" -}}
{{- end -}}

{{/*
vllm.selectorLabels are the labels a release's Service and Deployment select pods by. They never change
over a release's life (a Deployment's selector is immutable), so no version goes in here.
*/}}
{{- define "vllm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vllm.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{/*
vllm.testSelectorLabels identify the `helm test` pod. Its name differs from the server's, so neither the
Service nor the Deployment's ReplicaSet (which adopts matching orphan pods) ever selects it.
*/}}
{{- define "vllm.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "vllm.name" . | trunc 58 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{/*
vllm.labels go on every object: the pod labels plus what identifies the versions.
*/}}
{{- define "vllm.labels" -}}
{{ include "vllm.podLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
vllm.podLabels go on the server's pod templates and claim templates: the selector labels and the role, no
version. A version label there would change the pod template on every chart upgrade, and a changed template
restarts every server (minutes of reload, an outage with Recreate) even when nothing it runs changed.
*/}}
{{- define "vllm.podLabels" -}}
{{ include "vllm.selectorLabels" . }}
app.kubernetes.io/component: server
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
vllm.gpus is how many GPUs one server pod takes: tensor × pipeline parallel ranks, one GPU each, divided
over multiNode.nodes pods with multiNode (vllm.multiNodeProblems refuses a remainder).
*/}}
{{- define "vllm.gpus" -}}
{{- $world := mul (int .Values.parallelism.tensor) (int .Values.parallelism.pipeline) -}}
{{- ternary (div $world (int .Values.multiNode.nodes)) $world .Values.multiNode.enabled -}}
{{- end -}}

{{/*
vllm.servedName is the model name clients send: model.servedName, or model.name when that is empty.
*/}}
{{- define "vllm.servedName" -}}
{{- .Values.model.servedName | default .Values.model.name -}}
{{- end -}}

{{/*
vllm.pinned is "true" when model.revision is a full commit sha, so the model's folder is known now.
*/}}
{{- define "vllm.pinned" -}}
{{- regexMatch "^[0-9a-f]{40}$" (toString .Values.model.revision) -}}
{{- end -}}

{{/*
Paths inside the pod. The cache volume is mounted at /models, as in tpserve's image; weights live in
tpserve's cache layout <HF_HOME>/tpserve/<org>--<name>/<sha>/ (src/tpserve/fetch/cache.py model_path).
*/}}
{{- define "vllm.cacheDir" -}}/models/hf/tpserve{{- end -}}
{{- /* Where fetch.offline reads a claim pre-filled in Hugging Face hub layout: hf/hub on the claim. */}}
{{- define "vllm.hubCacheDir" -}}/models/hf/hub{{- end -}}
{{- define "vllm.pathFile" -}}/run/tpserve/model-path{{- end -}}

{{/*
vllm.modelPath is the verified folder the server loads when model.revision is pinned.
*/}}
{{- define "vllm.modelPath" -}}
{{- printf "%s/%s/%s" (include "vllm.cacheDir" .) (replace "/" "--" .Values.model.name) .Values.model.revision -}}
{{- end -}}

{{/*
vllm.claimName is the PersistentVolumeClaim of the cache: cache.existingClaim, or the one the chart makes.
*/}}
{{- define "vllm.claimName" -}}
{{- .Values.cache.existingClaim | default (printf "%s-cache" (include "vllm.fullname" .)) -}}
{{- end -}}

{{/*
vllm.fusionOff is "true" when the fused all-reduce must be switched off: only TP > 1 uses it.
*/}}
{{- define "vllm.fusionOff" -}}
{{- and (not .Values.vllm.allreduceFusion) (gt (int .Values.parallelism.tensor) 1) -}}
{{- end -}}

{{/*
vllm.nodeSelector is nodeSelector plus the gpu.product shortcut.
*/}}
{{- define "vllm.nodeSelector" -}}
{{- $selector := deepCopy .Values.nodeSelector -}}
{{- with .Values.gpu.product }}{{ $_ := set $selector "nvidia.com/gpu.product" . }}{{ end -}}
{{- with $selector }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/*
vllm.securityContext is every container's: nothing beyond what a non-root process needs, with the values'
securityContext merged over it (vllm.securityProblems refuses what would undo that).
*/}}
{{- define "vllm.securityContext" -}}
{{- $defaults := dict "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "capabilities" (dict "drop" (list "ALL")) -}}
{{- toYaml (mergeOverwrite $defaults (deepCopy .Values.securityContext)) -}}
{{- end -}}

{{/*
vllm.secretEnv is an environment variable read from a Secret key: {name, secret, key, optional}.
*/}}
{{- define "vllm.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret | quote }}
      key: {{ .key | quote }}
      optional: {{ .optional }}
{{- end -}}
