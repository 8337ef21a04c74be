"""The chart's multi-node server as plain processes: the rendered LeaderWorkerSet's leader and worker commands,
with what the LeaderWorkerSet controller and the kubelet would put in, for a host that stands in for the nodes.

The leader's and each worker's container command, args and environment are taken from the rendered
LeaderWorkerSet. The controller's variables (LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX) are
prepended to the environment, as its webhook does, with a loopback stand-in: the leader is 127.0.0.1 and pod
INDEX is worker INDEX. Then ``$(NAME)`` is expanded the way the kubelet expands it (each variable from those
before it; command and args from all of them; ``$$`` is a literal ``$``; unknown names stay as written).
``fieldRef: status.podIP`` becomes 127.0.0.1. Secrets are not resolved: their names are listed instead.
CUDA_VISIBLE_DEVICES stands in for the device plugin: pod INDEX gets GPUs INDEX × n … INDEX × n + n - 1,
n being the pod's nvidia.com/gpu limit.

    python lab/gpu/multinode_rehearsal.py OUT_DIR [-f VALUES] [--set K=V] [--path-map /models=/srv/{pod}/models]
    python lab/gpu/multinode_rehearsal.py OUT_DIR --manifest rendered.yaml      # no helm needed
    ... --vllm "python3 -m vllm.entrypoints.cli.main"     # where the host has no `vllm` console script

OUT_DIR gets, per pod (leader, worker-1, ...), POD.json ({"argv", "env", "secrets", ...}) and POD.sh, which
execs the argv with exactly that environment plus the host's PATH and the CUDA variables an image would set.
lab/gpu/multinode-rehearsal-values.yaml is the 2-process rehearsal's shape (nodes 2, one GPU each).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent.parent
CHART = REPO / "charts" / "vllm"
HELM = REPO / ".cache" / "tools" / "bin" / "helm"
LOOPBACK = "127.0.0.1"
# What an image's ENV would provide, taken from the host: POD.sh passes these through when they are set.
HOST_ENV = ("PATH", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "LIBRARY_PATH", "CPATH", "TRITON_PTXAS_PATH",
            "VIRTUAL_ENV", "PYTHONPATH")


@dataclass(frozen=True)
class PodCommand:
    """One pod of a group as a process: what to exec and with which environment."""

    pod: str
    worker_index: int
    argv: list[str]
    env: dict[str, str]
    secrets: list[str] = field(default_factory=list)
    gpus: int = 0


def expand(text: str, variables: dict[str, str]) -> str:
    """``$(NAME)`` expanded as the kubelet does (k8s.io/kubernetes third_party/forked/golang/expansion)."""
    out, cursor = [], 0
    while cursor < len(text):
        char = text[cursor]
        if char != "$" or cursor + 1 == len(text):
            out.append(char)
            cursor += 1
            continue
        following = text[cursor + 1]
        if following == "$":
            out.append("$")
            cursor += 2
        elif following == "(":
            closer = text.find(")", cursor + 2)
            if closer == -1:
                out.append("$(")
                cursor += 2
            else:
                name = text[cursor + 2:closer]
                out.append(variables.get(name, f"$({name})"))
                cursor = closer + 1
        else:
            out.append(char + following)
            cursor += 2
    return "".join(out)


def render(values_files: list[str], sets: list[str], helm: Path = HELM, release: str = "rehearsal") -> str:
    """`helm template` of the chart with those values, multiNode on."""
    argv = [str(helm), "template", release, str(CHART), "--set", "multiNode.enabled=true",
            "--api-versions", "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"]
    for path in values_files:
        argv += ["-f", path]
    for assignment in sets:
        argv += ["--set", assignment]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"helm template failed: {done.stderr.strip()}")
    return done.stdout


def leader_worker_set(manifest: str) -> dict:
    found = [doc for doc in yaml.safe_load_all(manifest) if doc and doc.get("kind") == "LeaderWorkerSet"]
    if len(found) != 1:
        raise SystemExit(f"expected one LeaderWorkerSet in the rendered chart, found {len(found)}: "
                         "is multiNode.enabled=true?")
    return found[0]


def pod_command(template: dict, worker_index: int, size: int, path_map: dict[str, str]) -> PodCommand:
    """The vllm container of a pod template as the kubelet would start it in pod WORKER_INDEX of a group."""
    pod = "leader" if worker_index == 0 else f"worker-{worker_index}"
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == "vllm"]
    declared = [{"name": "LWS_LEADER_ADDRESS", "value": LOOPBACK}, {"name": "LWS_GROUP_SIZE", "value": str(size)},
                {"name": "LWS_WORKER_INDEX", "value": str(worker_index)}]
    declared += [var for var in container.get("env", []) if not var["name"].startswith("LWS_")]
    env: dict[str, str] = {}
    secrets = []
    for var in declared:
        source = var.get("valueFrom")
        if source is None:
            env[var["name"]] = mapped(expand(var.get("value", ""), env), path_map, pod)
        elif source.get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[var["name"]] = LOOPBACK
        else:
            secrets.append(var["name"])
    argv = [mapped(expand(part, env), path_map, pod) for part in container.get("command", []) + container["args"]]
    gpus = int(container["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(worker_index * gpus + n) for n in range(gpus))
    return PodCommand(pod=pod, worker_index=worker_index, argv=argv, env=env, secrets=secrets, gpus=gpus)


def mapped(text: str, path_map: dict[str, str], pod: str) -> str:
    """TEXT with a leading in-pod path (a key of PATH_MAP) moved to the host's folder, {pod} filled in."""
    for inside, outside in path_map.items():
        if text == inside or text.startswith(inside + "/"):
            return outside.replace("{pod}", pod) + text[len(inside):]
    return text


def group_commands(manifest: str, path_map: dict[str, str] | None = None,
                   vllm: list[str] | None = None) -> list[PodCommand]:
    """Leader first, then each worker, of the rendered chart's LeaderWorkerSet. VLLM, when given, replaces the
    image's `vllm` console script at the head of each command (e.g. python3 -m vllm.entrypoints.cli.main)."""
    spec = leader_worker_set(manifest)["spec"]["leaderWorkerTemplate"]
    size = int(spec.get("size", 1))
    leader = spec.get("leaderTemplate") or spec["workerTemplate"]
    pods = [pod_command(leader if index == 0 else spec["workerTemplate"], index, size, path_map or {})
            for index in range(size)]
    if vllm:
        pods = [replace(pod, argv=[*vllm, *pod.argv[1:]]) if pod.argv[0] == "vllm" else pod for pod in pods]
    return pods


def shell_script(command: PodCommand) -> str:
    """A script that execs COMMAND with its environment only, plus the host's HOST_ENV variables."""
    names = " ".join(HOST_ENV)
    assignments = " ".join(shlex.quote(f"{name}={value}") for name, value in command.env.items())
    lines = ["#!/bin/bash", f"# {command.pod} of the rendered LeaderWorkerSet (lab/gpu/multinode_rehearsal.py)",
             "set -euo pipefail", "image_env=()",
             f'for name in {names}; do if [ -n "${{!name:-}}" ]; then image_env+=("$name=${{!name}}"); fi; done',
             f'exec env -i "${{image_env[@]}}" {assignments} {shlex.join(command.argv)}', ""]
    if command.secrets:
        lines.insert(2, f"# not set here (Secrets): {', '.join(command.secrets)}")
    return "\n".join(lines)


def write(commands: list[PodCommand], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for command in commands:
        (out / f"{command.pod}.json").write_text(json.dumps(asdict(command), indent=2) + "\n")
        script = out / f"{command.pod}.sh"
        script.write_text(shell_script(command))
        script.chmod(0o755)
        written += [out / f"{command.pod}.json", script]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for POD.json and POD.sh")
    parser.add_argument("-f", "--values", action="append", default=[], help="a values file (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="a helm --set (repeatable)")
    parser.add_argument("--manifest", type=Path, help="an already rendered chart instead of running helm")
    parser.add_argument("--helm", type=Path, default=HELM, help=f"the helm binary (default {HELM})")
    parser.add_argument("--path-map", action="append", default=[], metavar="INSIDE=OUTSIDE",
                        help="move an in-pod path prefix to a host folder; {pod} is leader, worker-1, ...")
    parser.add_argument("--vllm", type=shlex.split, metavar="COMMAND",
                        help="what runs instead of the image's `vllm` script, e.g. 'python3 -m vllm.entrypoints.cli.main'")
    args = parser.parse_args(argv)
    path_map = {}
    for item in args.path_map:
        inside, sep, outside = item.partition("=")
        if not sep or not inside.startswith("/"):
            parser.error(f"--path-map {item!r}: write INSIDE=OUTSIDE, e.g. /models=/srv/rehearsal/{{pod}}/models")
        path_map[inside.rstrip("/")] = outside.rstrip("/")
    manifest = args.manifest.read_text() if args.manifest else render(args.values, args.set, args.helm)
    for path in write(group_commands(manifest, path_map, args.vllm), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
