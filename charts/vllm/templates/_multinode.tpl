{{/*
vllm.servingSelectorLabels select the pods that serve HTTP: every server pod, or with multiNode only the
leaders (worker index 0, the LeaderWorkerSet's label); the workers serve no HTTP.
*/}}
{{- define "vllm.servingSelectorLabels" -}}
{{ include "vllm.selectorLabels" . }}
{{- if .Values.multiNode.enabled }}
leaderworkerset.sigs.k8s.io/worker-index: "0"
{{- end }}
{{- end -}}

{{/*
vllm.multiNodeProblems: a multi-node layout must split evenly into pods that fit a node (vLLM requires
--nnodes to divide tensor × pipeline; each node runs that many over nodes ranks, node-contiguous), and a
tensor-parallel group must fill whole pods or lie inside one, so no group straddles part of a node.
*/}}
{{- define "vllm.multiNodeProblems" -}}
{{- $v := .Values -}}
{{- $problems := list -}}
{{- if $v.multiNode.enabled -}}
{{- $tp := int $v.parallelism.tensor -}}
{{- $pp := int $v.parallelism.pipeline -}}
{{- $nodes := int $v.multiNode.nodes -}}
{{- $world := mul $tp $pp -}}
{{- if ne (mod $world $nodes) 0 -}}
{{- $problems = append $problems (printf "parallelism.tensor × parallelism.pipeline = %d × %d = %d GPUs cannot be split evenly over multiNode.nodes=%d pods (vLLM's --nnodes must divide the world size): make tensor × pipeline a multiple of %d, e.g. tensor = the GPUs of one node and pipeline = %d" $tp $pp $world $nodes $nodes $nodes) -}}
{{- else -}}
{{- $perPod := div $world $nodes -}}
{{- if gt $perPod (int $v.gpu.perNode) -}}
{{- $problems = append $problems (printf "parallelism.tensor × parallelism.pipeline / multiNode.nodes = %d / %d = %d GPUs per pod, more than gpu.perNode=%d: raise multiNode.nodes, lower the parallelism, or raise gpu.perNode if your nodes have more GPUs" $world $nodes $perPod (int $v.gpu.perNode)) -}}
{{- else if and (ne (mod $tp $perPod) 0) (ne (mod $perPod $tp) 0) -}}
{{- $problems = append $problems (printf "parallelism.tensor=%d does not fit pods of %d GPUs: a tensor-parallel group would straddle part of a node, so use a tensor size that divides %d or is a multiple of it" $tp $perPod $perPod) -}}
{{- end -}}
{{- end -}}
{{- if $v.image.tpserve -}}
{{- $problems = append $problems "multiNode.enabled needs the official vLLM image (image.tpserve=false): the workers run `vllm serve --headless`, which `tpserve serve` does not start" -}}
{{- end -}}
{{- if $v.cache.allowReadWriteOnceReplicas -}}
{{- $problems = append $problems "cache.allowReadWriteOnceReplicas is for the Deployment's one shared claim; with multiNode.enabled every pod gets a claim of its own (or mounts cache.existingClaim, which must then be ReadWriteMany): remove it" -}}
{{- end -}}
{{- if eq (int $v.multiNode.masterPort) 8000 -}}
{{- $problems = append $problems "multiNode.masterPort=8000 is the server's HTTP port: pick another, e.g. 29501" -}}
{{- end -}}
{{- range $value, $env := dict "multiNode.env" $v.multiNode.env "vllm.extraEnv" $v.vllm.extraEnv }}
{{- range $name, $_ := $env }}
{{- if hasPrefix "LWS_" $name }}
{{- $problems = append $problems (printf "%s.%s is set in every pod by the LeaderWorkerSet controller: remove it" $value $name) -}}
{{- else if eq $name "VLLM_HOST_IP" }}
{{- $problems = append $problems (printf "%s.VLLM_HOST_IP is set by the chart to the pod's IP: remove it" $value) -}}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}
