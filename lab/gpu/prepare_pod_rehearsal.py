"""Everything the hardened-pod rehearsal needs on the GPU host, made here where helm and a compiler are.

    python3 lab/gpu/prepare_pod_rehearsal.py OUT_DIR [SHAPE [HELM_SET ...]]

SHAPE is a `tpserve shapes` name (default llama-2-7b); each HELM_SET (key=value) is passed to helm as
--set after the values file, e.g. a CPU trial of the rehearsal itself: tiny-llama parallelism.tensor=1.

OUT_DIR gets: ``model/`` (the Llama-2-7b shape's config.json, the 32k tokenizer and a placeholder
weights file: what the hub stand-in serves), ``model.json`` (repo id and the stand-in's commit of those files), ``manifest.yaml``
(the chart rendered by the real helm with lab/gpu/pod-rehearsal-values.yaml at that commit),
``manifest-note.yaml`` (the same, with the helm test set to the note's workload: 59 prompts × 256 tokens,
all in flight) and ``runtime-default-seccomp`` (lab/gpu/runtime_default_seccomp.c, built static).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from lab.hubfake import HubFake
from tpserve.shapes import SHAPES, write_model_folder

VALUES = REPO / "lab" / "gpu" / "pod-rehearsal-values.yaml"
NOTE_WORKLOAD = ["--set", "tests.users=59", "--set", "tests.numRequests=59", "--set", "tests.maxTokens=256"]


def placeholder_safetensors() -> bytes:
    """A valid one-tensor safetensors file. The fetch requires a weights file beside config.json (tpserve
    serves transformers-format repos only); the server runs with --load-format dummy, which never reads it."""
    header = json.dumps({"placeholder": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"\0\0"


def set_flag(pair: str) -> str:
    """--set-string for environment variables (the schema wants strings), --set for the rest."""
    return "--set-string" if pair.startswith(("vllm.extraEnv.", "fetch.extraEnv.")) else "--set"


def main(out: Path, shape: str = "llama-2-7b", sets: list[str] = ()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    write_model_folder(SHAPES[shape], model)
    (model / "model.safetensors").write_bytes(placeholder_safetensors())
    repo_id = yaml.safe_load(VALUES.read_text())["model"]["name"]
    files = {p.relative_to(model).as_posix(): p.read_bytes() for p in sorted(model.rglob("*")) if p.is_file()}
    hub = HubFake()
    revision = hub.publish(repo_id, files)
    hub._server.server_close()
    (out / "model.json").write_text(json.dumps({"repo_id": repo_id, "revision": revision}, indent=1))
    helm = subprocess.run([sys.executable, "tools/k8s_tools.py"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.split()[0]
    for name, extra in (("manifest.yaml", []), ("manifest-note.yaml", NOTE_WORKLOAD)):
        rendered = subprocess.run([helm, "template", "rehearsal", str(REPO / "charts" / "vllm"), "-f", str(VALUES),
                                   "--set", f"model.revision={revision}",
                                   *(arg for pair in sets for arg in (set_flag(pair), pair)), *extra],
                                  check=True, capture_output=True, text=True).stdout
        (out / name).write_text(rendered)
    subprocess.run(["cc", "-O2", "-Wall", "-static", "-o", str(out / "runtime-default-seccomp"),
                    str(REPO / "lab" / "gpu" / "runtime_default_seccomp.c")], check=True)
    print(f"{out}: {repo_id}@{revision}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "llama-2-7b", sys.argv[3:])
