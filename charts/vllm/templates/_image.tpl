{{/*
vllm.image is an image reference from a map of registry, repository, tag and optional digest.
*/}}
{{- define "vllm.image" -}}
{{- $name := .repository -}}
{{- with .registry }}{{ $name = printf "%s/%s" . $name }}{{ end -}}
{{- $name = printf "%s:%s" $name (toString .tag) -}}
{{- with .digest }}{{ $name = printf "%s@%s" $name . }}{{ end -}}
{{- $name -}}
{{- end -}}

{{/*
vllm.imageProblems: image.digest is empty or sha256:<64 lowercase hex digits>, checked here rather than by a
schema pattern, whose error would show only the regex.
*/}}
{{- define "vllm.imageProblems" -}}
{{- $problems := list -}}
{{- $digest := .Values.image.digest | default "" | toString -}}
{{- if and $digest (not (regexMatch "^sha256:[0-9a-f]{64}$" $digest)) -}}
{{- $problems = append $problems (printf "image.digest=%s is not an image digest: write sha256: and the 64 lowercase hex digits the registry reports (e.g. `docker buildx imagetools inspect IMAGE:TAG`), or leave it empty to pin by tag only" $digest) -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}
