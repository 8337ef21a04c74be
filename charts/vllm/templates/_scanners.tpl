{{/*
checkov's waivers on the chart's objects: checkov.io/skipN annotations (ID=reason), which checkov reads from
an object's metadata, so a scan of the rendered chart passes without --skip-check. Each object carries only
the findings true of it; tests/chart/scan_waivers.yaml is the reasons' source of truth (test_scanners.py
checks these equal it and that each still fires without its annotation). On the Deployment and the
LeaderWorkerSet, never in their pod templates: a new reason would otherwise restart the server.
*/}}

{{/*
vllm.checkovWaivers are the annotations of one object. Input: dict "root" (the chart's context) and "object":
server (the Deployment or LeaderWorkerSet), test (the helm test pod), loadtest (the load-test master Job:
checkov asks a Job for no probes), loadtest-worker (the worker Job, whose pods no NetworkPolicy selects), or
object (a Service or ConfigMap: only the namespace finding).
*/}}
{{- define "vllm.checkovWaivers" -}}
{{- $v := .root.Values -}}
{{- $reasons := dict -}}
{{- $_ := set $reasons "CKV_K8S_8" "Liveness probe: the helm test pod runs to completion in minutes, with nothing to restart; a multiNode worker serves no HTTP to probe and exits when its engine processes die (the LeaderWorkerSet then recreates the group), and the leader's liveness probe catches a stalled group." -}}
{{- $_ = set $reasons "CKV_K8S_9" "Readiness probe: no Service routes clients to the helm test pod or a multiNode worker (only the leader serves HTTP), so readiness means nothing." -}}
{{- $_ = set $reasons "CKV2_K8S_6" "NetworkPolicy: the helm test pod and the load-test workers accept no connections; they only connect out (to the server, and the workers to their master) for the length of a test." -}}
{{- $_ = set $reasons "CKV_K8S_11" "CPU limits: none on purpose. A CFS quota throttles vLLM's tokenizer and scheduler threads and adds latency to every token; the CPU request reserves the cores, and memory's limit equals its request." -}}
{{- $_ = set $reasons "CKV_K8S_15" "imagePullPolicy Always: the tag is fixed (and image.digest can pin the bytes), so IfNotPresent pulls the same image without a registry round trip per start for a many-GB image." -}}
{{- $_ = set $reasons "CKV_K8S_21" "Default namespace: the chart sets no namespace; `helm install -n` / `kubectl apply -n` choose it. Scanners render without one." -}}
{{- $_ = set $reasons "CKV_K8S_35" "Secrets as files: vLLM reads its API key only from VLLM_API_KEY (or a command-line flag, which is worse) and tpserve's fetch reads HF_TOKEN; both come from secretKeyRef, never a literal." -}}
{{- $_ = set $reasons "CKV_K8S_40" "UID above 10000: each image's own user. The official vLLM image runs as root unless told otherwise; the chart runs it as uid 2000, the `vllm` user its newer builds carry (home /home/vllm). tpserve's images run as uid 1000 (USER 1000:1000; its image owns its home and /models by it). Non-root, without capabilities or privilege escalation, on a read-only root filesystem." -}}
{{- $_ = set $reasons "CKV_K8S_43" "Image digest: the tag is fixed and image.digest pins the bytes for those who mirror the image; the chart cannot know the digest of every user's mirror." -}}
{{- $pod := list "CKV_K8S_15" "CKV_K8S_21" "CKV_K8S_40" "CKV_K8S_43" -}}
{{- $noProbes := list "CKV_K8S_8" "CKV_K8S_9" -}}
{{- $checks := get (dict
  "server" (concat (list "CKV_K8S_11") $pod)
  "test" (concat $noProbes (list "CKV2_K8S_6") $pod)
  "loadtest" $pod
  "loadtest-worker" (concat (list "CKV2_K8S_6") $pod)
  "object" (list "CKV_K8S_21")) .object -}}
{{- /* A multiNode worker has no probes (vllm.serverContainer). */ -}}
{{- if and (eq .object "server") $v.multiNode.enabled }}{{ $checks = concat $noProbes $checks }}{{ end -}}
{{- /* Secrets as environment variables: only where a secretKeyRef is rendered. */ -}}
{{- $hfToken := and $v.hfToken.secretName (not $v.fetch.offline) (eq .object "server") -}}
{{- if and (ne .object "object") (or $v.apiKey.secretName $hfToken) }}{{ $checks = append $checks "CKV_K8S_35" }}{{ end -}}
{{- $annotations := dict -}}
{{- range $index, $check := $checks }}{{ $_ := set $annotations (printf "checkov.io/skip%d" (add1 $index)) (printf "%s=%s" $check (get $reasons $check)) }}{{ end -}}
{{- toYaml $annotations -}}
{{- end -}}
