{{/*
vllm.securityProblems: what podSecurityContext and securityContext may not change: the chart's own rules
(root, privileged, a writable image, capabilities) and what Kubernetes' Pod Security Standards forbid
(baseline: privileged SELinux types, an SELinux user or role, unsafe sysctls, Unmasked /proc, Unconfined
seccomp and AppArmor; restricted: the root group). capabilities.add takes only the names listed here, each
with its reason (docs/chart.md). hostNetwork, hostPID and hostIPC have no value: the schema refuses them.
*/}}
{{- define "vllm.securityProblems" -}}
{{- $problems := list -}}
{{- $allowedCaps := dict "IPC_LOCK" "NCCL's memory registration over InfiniBand/RDMA" "SYS_PTRACE" "py-spy on a stuck worker" -}}
{{- $seLinuxTypes := list "container_t" "container_init_t" "container_kvm_t" "container_engine_t" -}}
{{- $safeSysctls := list "kernel.shm_rmid_forced" "net.ipv4.ip_local_port_range" "net.ipv4.ip_local_reserved_ports" "net.ipv4.ip_unprivileged_port_start" "net.ipv4.ping_group_range" "net.ipv4.tcp_fin_timeout" "net.ipv4.tcp_keepalive_intvl" "net.ipv4.tcp_keepalive_probes" "net.ipv4.tcp_keepalive_time" "net.ipv4.tcp_syncookies" -}}
{{- $uid := include "vllm.imageUid" . -}}
{{- range $value, $sc := dict "podSecurityContext" .Values.podSecurityContext "securityContext" .Values.securityContext }}
{{- if and (hasKey $sc "runAsUser") (eq (int $sc.runAsUser) 0) }}
{{- $problems = append $problems (printf "%s.runAsUser=0 runs as root: the image's user is %s, keep it" $value $uid) -}}
{{- end }}
{{- if and (hasKey $sc "runAsNonRoot") (not $sc.runAsNonRoot) }}
{{- $problems = append $problems (printf "%s.runAsNonRoot=false lets the server run as root: remove it" $value) -}}
{{- end }}
{{- if and (hasKey $sc "runAsGroup") (eq (int $sc.runAsGroup) 0) }}
{{- $problems = append $problems (printf "%s.runAsGroup=0 runs in the root group, which may write what an image leaves group-writable: the image's group is %s, keep it" $value $uid) -}}
{{- end }}
{{- if eq (dig "seccompProfile" "type" "" $sc) "Unconfined" }}
{{- $problems = append $problems (printf "%s.seccompProfile.type=Unconfined lifts the syscall filter: keep RuntimeDefault or use a Localhost profile" $value) -}}
{{- end }}
{{- with $sc.seLinuxOptions }}
{{- if and .type (not (has .type $seLinuxTypes)) }}
{{- $problems = append $problems (printf "%s.seLinuxOptions.type=%s is not a confined container type: use %s or %s (the types Kubernetes' baseline Pod Security Standard allows), or leave it to the runtime" $value .type (join ", " (initial $seLinuxTypes)) (last $seLinuxTypes)) -}}
{{- end }}
{{- range $field := list "user" "role" }}
{{- if get $sc.seLinuxOptions $field }}
{{- $problems = append $problems (printf "%s.seLinuxOptions.%s may not be set (Kubernetes' baseline Pod Security Standard): remove it; type and level are enough" $value $field) -}}
{{- end }}
{{- end }}
{{- end }}
{{- if eq (dig "appArmorProfile" "type" "" $sc) "Unconfined" }}
{{- $problems = append $problems (printf "%s.appArmorProfile.type=Unconfined lifts AppArmor's confinement: keep RuntimeDefault or use a Localhost profile" $value) -}}
{{- end }}
{{- end }}
{{- $psc := .Values.podSecurityContext -}}
{{- if and (hasKey $psc "fsGroup") (eq (int $psc.fsGroup) 0) }}
{{- $problems = append $problems (printf "podSecurityContext.fsGroup=0 gives the root group the pod's volumes: the image's group is %s, keep it" $uid) -}}
{{- end }}
{{- range $group := $psc.supplementalGroups | default list }}
{{- if eq (int $group) 0 }}
{{- $problems = append $problems "podSecurityContext.supplementalGroups holds 0, the root group: list only the groups of the volumes you share" -}}
{{- end }}
{{- end }}
{{- range $sysctl := $psc.sysctls | default list }}
{{- if not (has $sysctl.name $safeSysctls) }}
{{- $problems = append $problems (printf "podSecurityContext.sysctls %s is not a safe sysctl (%s): the others reach beyond the pod, or need the kubelet's --allowed-unsafe-sysctls; remove it" $sysctl.name (join ", " $safeSysctls)) -}}
{{- end }}
{{- end }}
{{- $sc := .Values.securityContext -}}
{{- if $sc.privileged }}
{{- $problems = append $problems "securityContext.privileged=true gives the containers the host's devices and every capability: GPUs come from gpu.resource, remove it" -}}
{{- end }}
{{- if $sc.allowPrivilegeEscalation }}
{{- $problems = append $problems "securityContext.allowPrivilegeEscalation=true lets a process gain privileges (setuid): remove it" -}}
{{- end }}
{{- if and (hasKey $sc "readOnlyRootFilesystem") (not $sc.readOnlyRootFilesystem) }}
{{- $problems = append $problems "securityContext.readOnlyRootFilesystem=false makes the image writable: every path the server writes is a volume already; add one with extraVolumes for yours" -}}
{{- end }}
{{- if eq ($sc.procMount | default "") "Unmasked" }}
{{- $problems = append $problems "securityContext.procMount=Unmasked shows the container the /proc paths the runtime masks: remove it (Default)" -}}
{{- end }}
{{- with $sc.capabilities }}
{{- if and (hasKey . "drop") (not (has "ALL" .drop)) }}
{{- $problems = append $problems "securityContext.capabilities.drop must contain ALL: capabilities are added back only through capabilities.add" -}}
{{- end }}
{{- range $cap := .add | default list }}
{{- if not (hasKey $allowedCaps $cap) }}
{{- $problems = append $problems (printf "securityContext.capabilities.add %s is not one the chart allows: only IPC_LOCK (%s) and SYS_PTRACE (%s)" $cap (get $allowedCaps "IPC_LOCK") (get $allowedCaps "SYS_PTRACE")) -}}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $problems -}}
{{- end -}}
