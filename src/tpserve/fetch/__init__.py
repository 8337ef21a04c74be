"""Fetch and verify: the code tpserve's Helm chart runs in its init container as well as tpserve's own.

``charts/vllm/files/tpserve`` links to this folder: the chart ships these files, unchanged, in its fetch
ConfigMap, which the init container mounts as a package named ``tpserve`` (``python3 -m
tpserve.fetchjob``). So the modules import each other relatively, and only from the standard library and
huggingface_hub, which the official vLLM image carries.
"""
