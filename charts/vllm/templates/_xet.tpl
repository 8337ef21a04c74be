{{/*
vllm.xetEnv bounds hf_xet's download buffers, the part of the init container's memory that grows past
fetch.resources.memory if left alone (docs/chart.md, "Fetch memory"). The names are hf_xet 1.8.0's
(xet-runtime's config; 1.5 to 1.7 read them too); an hf_xet that does not know one ignores it. Defaults
quoted are the fixed ones before hf_xet 1.7, which derives them from the memory limit. fetch.extraEnv may
set any of them instead (with fetch.resources.memory to match).
*/}}
{{- define "vllm.xetEnv" -}}
{{- $xetSet := .Values.fetch.extraEnv }}
{{- if not (hasKey $xetSet "HF_XET_HIGH_PERFORMANCE") }}
# The high-performance preset raises Xet's buffer cap to 64 GB and (hf_xet < 1.7) overrides the caps below.
- name: HF_XET_HIGH_PERFORMANCE
  value: "0"
{{- end }}
{{- if not (hasKey $xetSet "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT") }}
# All of Xet's download buffers together: 8 GB by default, twice the 4Gi limit.
- name: HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT
  value: 1gb
{{- end }}
{{- if not (hasKey $xetSet "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE") }}
# The buffer always there (2 GB by default); with 4 files x 128mb it stays inside the 1gb above.
- name: HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE
  value: 480mb
{{- end }}
{{- if not (hasKey $xetSet "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE") }}
# Added per file being downloaded (512 MB by default).
- name: HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE
  value: 128mb
{{- end }}
{{- if not (hasKey $xetSet "HF_XET_DATA_MAX_CONCURRENT_FILE_DOWNLOADS") }}
# Files Xet reconstructs at once (8 by default): tpserve's fetch downloads 4 at a time (hub.FETCH_WORKERS).
- name: HF_XET_DATA_MAX_CONCURRENT_FILE_DOWNLOADS
  value: "4"
{{- end }}
{{- end -}}
