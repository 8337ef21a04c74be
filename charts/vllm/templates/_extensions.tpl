{{/*
Extension points (docs/chart.md, "Extension points"): the pod securityContext merged over the chart's,
extra volumes and their mounts in the server container, and the checks that keep the chart's guarantees
(the security contexts' in _security.tpl).
*/}}

{{/*
vllm.imageUid is the uid (and gid) of the image's own non-root user (docs/chart.md, "The image's user"):
1000 for tpserve's images (docker/Dockerfile ends with USER 1000:1000); 2000 for the official
vllm/vllm-openai, which runs as root unless told otherwise and whose newer builds carry a `vllm` user,
uid 2000, home /home/vllm, that they do not switch to. The chart never relies on that user existing: HOME,
USER and every path the server writes are set and mounted by the chart (vllm.baseEnv, vllm.scratchMounts).
*/}}
{{- define "vllm.imageUid" -}}
{{- ternary 1000 2000 (.Values.image.tpserve | default false) -}}
{{- end -}}

{{/*
vllm.podSecurityContext is the server pod's: the image's uid, gid the same (not the official image's gid 0,
which would let the process write what the image leaves group-0-writable, /etc/passwd among it), never
root, fsGroup the same so the cache volume is writable for it (OnRootMismatch skips re-labelling hundreds
of GB of weights on every start), the runtime's seccomp profile; values.podSecurityContext merged over it.
*/}}
{{- define "vllm.podSecurityContext" -}}
{{- $uid := include "vllm.imageUid" . | int -}}
{{- $defaults := dict "runAsUser" $uid "runAsGroup" $uid "runAsNonRoot" true "fsGroup" $uid "fsGroupChangePolicy" "OnRootMismatch" "seccompProfile" (dict "type" "RuntimeDefault") -}}
{{- toYaml (mergeOverwrite $defaults (deepCopy .Values.podSecurityContext)) -}}
{{- end -}}

{{/*
vllm.chartMounts are the server container's own mount paths, which extra mounts may not touch.
*/}}
{{- define "vllm.chartMounts" -}}
{{- toJson (list "/models/hf" "/models/vllm-cache" "/tmp" "/home/vllm" "/run/tpserve" "/dev/shm") -}}
{{- end -}}

{{/*
vllm.extraVolumes renders values.extraVolumes ({name: source}) as pod volumes.
*/}}
{{- define "vllm.extraVolumes" -}}
{{- range $name, $source := .Values.extraVolumes }}
- {{ toYaml (merge (dict "name" $name) $source) | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/*
vllm.extraVolumeMounts renders values.extraVolumeMounts ({volume: {mountPath, readOnly, subPath}}), read-only
unless readOnly is false.
*/}}
{{- define "vllm.extraVolumeMounts" -}}
{{- range $name, $mount := .Values.extraVolumeMounts }}
{{- $mount = merge (dict "name" $name) (deepCopy $mount) }}
{{- if not (hasKey $mount "readOnly") }}{{ $_ := set $mount "readOnly" true }}{{ end }}
- {{ toYaml $mount | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/*
vllm.extensionProblems: extra volumes must not shadow the chart's, and security overrides must keep the
pod non-root, unprivileged and on a read-only root.
*/}}
{{- define "vllm.extensionProblems" -}}
{{- $problems := list -}}
{{- $chartVolumes := list -}}
{{- range (include "vllm.volumes" . | fromYamlArray) }}{{ $chartVolumes = append $chartVolumes .name }}{{ end -}}
{{- range $name, $source := .Values.extraVolumes }}
{{- if has $name $chartVolumes }}
{{- $problems = append $problems (printf "extraVolumes.%s is a volume of the chart (%s): pick another name" $name (join ", " $chartVolumes)) -}}
{{- end }}
{{- if hasKey $source "hostPath" }}
{{- $problems = append $problems (printf "extraVolumes.%s is a hostPath, which ties the pod to a node's files and escapes its isolation: use a persistentVolumeClaim, configMap or secret" $name) -}}
{{- end }}
{{- end }}
{{- $chartMounts := include "vllm.chartMounts" . | fromJsonArray -}}
{{- range $name, $mount := .Values.extraVolumeMounts }}
{{- if not (hasKey $.Values.extraVolumes $name) }}
{{- $problems = append $problems (printf "extraVolumeMounts.%s names no volume of extraVolumes: add extraVolumes.%s or remove the mount" $name $name) -}}
{{- end }}
{{- $path := clean $mount.mountPath -}}
{{- if eq $path "/" }}
{{- $problems = append $problems (printf "extraVolumeMounts.%s.mountPath=/ would hide the image: mount it on a folder of its own, e.g. /adapters" $name) -}}
{{- else }}
{{- range $own := $chartMounts }}
{{- if or (eq $path $own) (hasPrefix (printf "%s/" $own) $path) (hasPrefix (printf "%s/" $path) $own) }}
{{- $problems = append $problems (printf "extraVolumeMounts.%s.mountPath=%s is on, inside or above the chart's mount %s: mount it on a folder of its own, e.g. /adapters" $name $mount.mountPath $own) -}}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $problems = concat $problems (include "vllm.securityProblems" . | fromYamlArray) -}}
{{- toYaml $problems -}}
{{- end -}}
