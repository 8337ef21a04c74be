{{/*
What the server container asks of its node besides CPU, memory and GPUs: device resources (resources.extra,
e.g. an RDMA device for NCCL over InfiniBand) and the node disk of its scratch emptyDirs.
*/}}

{{/*
vllm.extraResources are resources.extra as resource lines (NAME: count), the same in requests and limits:
Kubernetes requires them equal for extended resources.
*/}}
{{- define "vllm.extraResources" -}}
{{- $extra := dict -}}
{{- range $name, $count := .Values.resources.extra }}{{ $_ := set $extra $name ($count | int) }}{{ end -}}
{{- with $extra }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/*
vllm.ephemeralStorage is the server's ephemeral-storage request: the size limits of the pod's disk-backed
emptyDirs (/tmp, HOME and the model-path folder, and any extraVolumes emptyDir with a sizeLimit), in Mi
rounded up, so the scheduler picks a node whose disk holds them. No limit: each emptyDir's sizeLimit
already bounds it, and a container limit would add an eviction for nothing but logs.
*/}}
{{- define "vllm.ephemeralStorage" -}}
{{- $bytes := 0.0 -}}
{{- range $volume := concat (include "vllm.volumes" . | fromYamlArray) (include "vllm.extraVolumes" . | fromYamlArray) }}
{{- with $volume.emptyDir }}
{{- if and .sizeLimit (ne (.medium | default "") "Memory") }}
{{- $bytes = addf $bytes (include "vllm.bytes" .sizeLimit | float64) -}}
{{- end }}
{{- end }}
{{- end -}}
{{- printf "%dMi" (divf $bytes 1048576.0 | ceil | int64) -}}
{{- end -}}

{{/*
vllm.resourceProblems: resources.extra takes device resources (DOMAIN/NAME) in whole counts, none the chart
sets itself.
*/}}
{{- define "vllm.resourceProblems" -}}
{{- $problems := list -}}
{{- $owned := dict "cpu" "use resources.cpu" "memory" "use resources.memory" "ephemeral-storage" "it is requested from the emptyDirs' size limits (scratch.sizeLimit); remove it" -}}
{{- with .Values.gpu.resource }}{{ $_ := set $owned . "GPUs are requested from parallelism as gpu.resource; remove it" }}{{ end -}}
{{- range $name, $count := .Values.resources.extra }}
{{- if hasKey $owned $name }}
{{- $problems = append $problems (printf "resources.extra.%s is set by the chart: %s" $name (get $owned $name)) -}}
{{- else if not (contains "/" $name) }}
{{- $problems = append $problems (printf "resources.extra.%s is not a device resource: name a device plugin's DOMAIN/NAME, e.g. rdma/rdma_shared_device_a" $name) -}}
{{- else if not (regexMatch "^[1-9][0-9]*$" (toString $count)) }}
{{- $problems = append $problems (printf "resources.extra.%s=%v is not a whole number of devices: write a count of 1 or more, e.g. resources.extra.%s=1" $name $count $name) -}}
{{- end }}
{{- end }}
{{- toYaml $problems -}}
{{- end -}}
