{{/*
vllm.nameProblems: every name the chart derives must be one the API server and the controllers accept, for
any release name helm accepts (DNS-1123 labels joined by dots, at most 53 characters). vllm.fullname makes
release names valid (dots become dashes, a leading digit goes after vllm.name); what is left here cannot be.
- Services and LeaderWorkerSets need a DNS-1035 label: at most 63 characters, starting with a letter.
- The LeaderWorkerSet controller names group G's worker StatefulSet <name>-<G> (lws pod_controller.go,
  constructWorkerStatefulSetApplyConfiguration), and the StatefulSet controller labels its pods
  controller-revision-hash=<StatefulSet>-<hash of up to 10 characters>, a label value of at most 63: so the
  name may have 63 - 11 - len("-<G>") characters, 48 for group indexes up to 999 (vllm.lwsNameBudget).
- loadtest.run is part of the load-test Jobs' names, which their pods carry as the job-name label.
*/}}
{{- define "vllm.nameProblems" -}}
{{- $v := .Values -}}
{{- $problems := list -}}
{{- $full := include "vllm.fullname" . -}}
{{- $nameOverride := $v.nameOverride | default "" | toString -}}
{{- $fullnameOverride := $v.fullnameOverride | default "" | toString -}}
{{- if and $nameOverride (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $nameOverride)) -}}
{{- $problems = append $problems (printf "nameOverride=%s is not a DNS-1123 label, which object names and the app.kubernetes.io/name label need: lowercase letters, digits and '-', starting and ending with a letter or digit, e.g. nameOverride=llm" $nameOverride) -}}
{{- else if $fullnameOverride -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullnameOverride) -}}
{{- $problems = append $problems (printf "fullnameOverride=%s is not a Service name (a DNS-1035 label): lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, e.g. fullnameOverride=vllm-7b" $fullnameOverride) -}}
{{- end -}}
{{- else if regexMatch "^[0-9]" $full -}}
{{- $problems = append $problems (printf "release name %s and nameOverride=%s both start with a digit, so every object's name would (%s), which Services refuse (a DNS-1035 label starts with a letter): set fullnameOverride to a name that starts with a letter, e.g. fullnameOverride=vllm-%s" .Release.Name $nameOverride $full (replace "." "-" .Release.Name | trunc 58)) -}}
{{- end -}}
{{- $budget := int (include "vllm.lwsNameBudget" .) -}}
{{- if and $v.multiNode.enabled (gt (len $full) $budget) -}}
{{- $problems = append $problems (printf "with multiNode.enabled the LeaderWorkerSet name %s is %d characters, more than %d: its worker StatefulSets are named %s-<group> and Kubernetes labels their pods controller-revision-hash=<StatefulSet>-<hash of up to 10 characters>, at most 63 characters; use a shorter release name or set fullnameOverride to at most %d characters" $full (len $full) $budget $full $budget) -}}
{{- end -}}
{{- $run := toString $v.loadtest.run -}}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$" $run) -}}
{{- $problems = append $problems (printf "loadtest.run=%s cannot name the run's Jobs: 1 to 16 lowercase letters, digits and '-', starting and ending with a letter or digit, e.g. --set loadtest.run=2" $run) -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}

{{/*
vllm.lwsNameBudget is the longest LeaderWorkerSet name whose worker StatefulSets keep their pods'
controller-revision-hash label within 63 characters: 63 - len("-") - 10 - len("-<largest group index>"),
with room for group indexes up to 999 (or autoscaling.maxReplicas / replicaCount if larger), so scaling later
never needs a new name.
*/}}
{{- define "vllm.lwsNameBudget" -}}
{{- $groups := max (int .Values.replicaCount) (ternary (int .Values.autoscaling.maxReplicas) 0 .Values.autoscaling.enabled) 1000 -}}
{{- sub 52 (len (printf "-%d" (sub $groups 1))) -}}
{{- end -}}

{{/*
vllm.loadtestName is the prefix of a run's objects, <fullname>-loadtest-<run>, at most 56 characters so that
"-master" and "-worker" fit 63 (a Job's name becomes its pods' job-name label). The run always stays whole:
a fullname too long for it is cut and followed by 8 hex digits of its sha256, so two runs, or two releases
whose names share a prefix, never truncate to the same Job (a Job's template cannot be changed, so an
upgrade that reused a name would fail).
*/}}
{{- define "vllm.loadtestName" -}}
{{- $suffix := printf "-loadtest-%s" (toString .Values.loadtest.run) -}}
{{- $full := include "vllm.fullname" . -}}
{{- $room := sub 56 (len $suffix) -}}
{{- if gt (len $full) $room -}}
{{- $full = printf "%s-%s" (regexReplaceAll "-+$" (trunc (int (sub $room 9)) $full) "") (sha256sum $full | trunc 8) -}}
{{- end -}}
{{- printf "%s%s" $full $suffix -}}
{{- end -}}
