"""The chart's pod, rehearsed on a GPU host that has no Kubernetes and no container runtime.

Each container of the rendered pod runs with its exact command, arguments and environment, the way a
kubelet and runc would start it: in its own mount, PID, IPC and UTS namespaces, with the pod's volumes
(PVC, emptyDirs with their medium and size, the ConfigMap, subPaths) bind-mounted at their paths and
everything else read-only, as the pod's uid, gid and fsGroup, with every capability dropped,
no_new_privs set and a seccomp filter refusing what RuntimeDefault refuses (runtime_default_seccomp.c).
What stands in for the image is said where it happens (``IMAGE_STANDINS``) and printed in the record.

    python3 lab/gpu/pod_rehearsal.py run REHEARSAL_DIR OUT_DIR             # as root, on the GPU host
    python3 lab/gpu/pod_rehearsal.py compare REHEARSAL_DIR OUT_DIR ROUNDS  # hardening's cost, as a ratio

REHEARSAL_DIR is what ``prepare_pod_rehearsal.py`` wrote here: the rendered manifests, the model files
the hub stand-in serves, the seccomp wrapper. The record (``pod-rehearsal.json``) and every container's
log go to OUT_DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ROOT = Path("/srv/tpserve-pod")                 # the node's disk: volumes and the image stand-in
STANDIN = ROOT / "image"                        # what the image would hold: tpserve, the load test, tools
SITE = Path(os.environ.get("TPSERVE_SITE", "/opt/tpserve-site"))  # vLLM's offline bundle (the image's site-packages)
NS_FLAGS = ["--mount", "--pid", "--fork", "--mount-proc", "--ipc", "--uts", "--propagation", "private"]
PORT = 8000

# What each image would provide, standing in for it here: its ENTRYPOINT, WORKDIR and ENV
# (docker/Dockerfile and docker/Dockerfile.loadtest), on the host's Python with vLLM's bundle.
IMAGE_STANDINS = {
    "server": {"entrypoint": ["tpserve", "serve"], "workdir": "/home/tpserve", "files": {},
               "env": {"HOME": "/home/tpserve", "HF_HOME": "/models/hf", "VLLM_CACHE_ROOT": "/models/vllm-cache",
                       "VLLM_NO_USAGE_STATS": "1", "PYTHONUNBUFFERED": "1"}},
    "loadtest": {"entrypoint": ["locust", "-f", "/app/loadtest/prompts.py"], "workdir": "/results",
                 "files": {"/app": STANDIN / "app"},
                 "env": {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}},
}


# The variables a CUDA image sets in its ENV, taken from the host where it sets them.
IMAGE_ENV_FROM_HOST = ("LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "LIBRARY_PATH", "CPATH", "TRITON_PTXAS_PATH")


def say(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


# ----------------------------------------------------------------------------------------------------
# Inside the namespaces (as root): mount the volumes, make the rest read-only, drop to the pod's user.

def enter(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    Path(spec["workdir"]).mkdir(parents=True, exist_ok=True)       # the image's WORKDIR
    targets = set()
    for mount in sorted(spec["mounts"], key=lambda m: m["target"].count("/")):
        target = Path(mount["target"])
        target.mkdir(parents=True, exist_ok=True)
        if mount["kind"] == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mount['size']},mode=1777", "tmpfs", str(target)],
                           check=True)
        else:
            subprocess.run(["mount", "--bind", mount["source"], str(target)], check=True)
            if mount["readOnly"]:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        targets.add(str(target))
    os.chdir(spec["workdir"])
    if not spec["hardened"]:      # the comparison run: same namespaces and volumes, as root, nothing dropped
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    # The root filesystem and every other mount the host has (but /proc, /sys, /dev): read-only.
    kept = ("/proc", "/sys", "/dev")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point in targets or any(point == k or point.startswith(k + "/") for k in kept):
            continue
        subprocess.run(["mount", "-o", "remount,bind,ro", point], check=False, capture_output=True)
    argv = ["setpriv", f"--reuid={spec['uid']}", f"--regid={spec['gid']}",
            f"--groups={','.join(str(g) for g in spec['groups'])}",
            "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            str(STANDIN / "bin" / "runtime-default-seccomp"), *spec["argv"]]
    os.execvpe(argv[0], argv, spec["env"])


# ----------------------------------------------------------------------------------------------------
# On the host (as root): the node's part.

def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs: list[dict], kind: str, test: bool = False) -> dict:
    for doc in docs:
        hook = doc["metadata"].get("annotations", {}).get("helm.sh/hook")
        if doc["kind"] == kind and (hook == "test") == test:
            return doc
    raise SystemExit(f"no {kind} in the rendered chart")


def install_standin(rehearsal: Path) -> list[str]:
    """The image's files on the node's disk, readable by the pod's uid: tpserve, the load test, tools."""
    notes = []
    if STANDIN.exists():
        shutil.rmtree(STANDIN)
    (STANDIN / "bin").mkdir(parents=True)
    shutil.copytree(REPO / "src", STANDIN / "src")
    shutil.copytree(REPO / "loadtest", STANDIN / "app" / "loadtest")
    shutil.copy(rehearsal / "runtime-default-seccomp", STANDIN / "bin")
    python = sys.executable
    launchers = {
        "tpserve": f'exec {python} -c "import sys; from tpserve.cli import main; sys.exit(main())" "$@"',
        "locust": f'exec {python} -m locust "$@"',
        "python3": f'exec {python} "$@"',
    }
    for name, line in launchers.items():
        path = STANDIN / "bin" / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)
    # /app/loadtest/prompts.py is where the load-test image keeps the Locust file.
    notes.append(f"image stand-in: host python {sys.version.split()[0]} with vLLM's bundle at {SITE} "
                 f"and this repo's src/ on PYTHONPATH; tpserve/locust/python3 launchers in {STANDIN}/bin; "
                 f"the host's PATH and {', '.join(n for n in IMAGE_ENV_FROM_HOST if n in os.environ) or 'no other'} "
                 "variables as the image's ENV")
    for path in [ROOT, STANDIN, *STANDIN.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.parent == STANDIN / "bin" else 0o644)
    return notes


def prepare_volumes(pod: dict, configmap: dict, fs_group: int) -> dict[str, dict]:
    """Each volume of the pod as the kubelet would make it: a folder (PVC, emptyDir on disk), a tmpfs
    (emptyDir medium Memory, with its sizeLimit), or the ConfigMap's items with their mode."""
    volumes = {}
    for volume in pod["volumes"]:
        name = volume["name"]
        root = ROOT / "volumes" / name
        if "configMap" in volume:
            if root.exists():
                shutil.rmtree(root)
            spec = volume["configMap"]
            items = spec.get("items") or [{"key": key, "path": key} for key in configmap["data"]]
            for item in items:
                path = root / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(configmap["data"][item["key"]])
                path.chmod(spec.get("defaultMode", 0o644))
            for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
                folder.chmod(0o755)
            volumes[name] = {"kind": "bind", "source": str(root), "readOnly": True}
        elif volume.get("emptyDir", {}).get("medium") == "Memory":
            volumes[name] = {"kind": "tmpfs", "size": volume["emptyDir"].get("sizeLimit", "64Mi").replace("i", "")}
        else:
            if "emptyDir" in volume and root.exists():
                shutil.rmtree(root)          # an emptyDir starts empty with every pod
            root.mkdir(parents=True, exist_ok=True)
            mode = 0o2777 if "emptyDir" in volume else 0o2775
            os.chown(root, 0, fs_group)
            root.chmod(mode)
            volumes[name] = {"kind": "bind", "source": str(root), "readOnly": False, "mode": mode}
    return volumes


def mounts_of(container: dict, volumes: dict[str, dict], fs_group: int) -> list[dict]:
    mounts = []
    for mount in container.get("volumeMounts", []):
        volume = dict(volumes[mount["name"]])
        if mount.get("subPath"):
            source = Path(volume["source"]) / mount["subPath"]
            if not source.exists():      # the kubelet makes a missing subPath with the volume root's mode
                source.mkdir(parents=True)
                os.chown(source, 0, fs_group)
                source.chmod(volume.get("mode", 0o755))
            volume["source"] = str(source)
        volume["target"] = mount["mountPath"]
        volume["readOnly"] = volume.get("readOnly", False) or bool(mount.get("readOnly"))
        mounts.append(volume)
    return mounts


def container_env(container: dict, image: dict, extra: dict[str, str]) -> dict[str, str]:
    # The image's own ENV: its toolchain on PATH (ninja and nvcc for FlashInfer's JIT), CUDA's libraries.
    inherited = {name: os.environ[name] for name in IMAGE_ENV_FROM_HOST if name in os.environ}
    env = {**inherited, "PATH": f"{STANDIN / 'bin'}:{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "PYTHONPATH": f"{SITE}:{STANDIN / 'src'}", **image["env"]}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            raise SystemExit(f"{container['name']}: {item['name']} comes from {item}; the rehearsal sets no Secrets")
    env.update(extra)
    return env


def start(name: str, container: dict, pod: dict, volumes: dict, image: dict, out: Path,
          extra_env: dict[str, str] | None = None, hardened: bool = True) -> subprocess.Popen:
    context = pod.get("securityContext", {})
    own = container.get("securityContext", {})
    uid = own.get("runAsUser", context.get("runAsUser"))
    gid = own.get("runAsGroup", context.get("runAsGroup"))
    fs_group = context.get("fsGroup")
    assert uid not in (None, 0), f"{name}: the chart must run it as a non-root uid, not {uid}"
    assert own.get("readOnlyRootFilesystem") is True, f"{name}: the chart must set readOnlyRootFilesystem"
    assert own.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation must be false"
    assert own.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities must drop ALL"
    argv = list(container.get("command") or image["entrypoint"]) + list(container.get("args", []))
    image_files = [{"kind": "bind", "source": str(source), "target": target, "readOnly": True}
                   for target, source in image["files"].items()]
    spec = {"mounts": image_files + mounts_of(container, volumes, fs_group), "uid": uid, "gid": gid,
            "groups": sorted({gid, fs_group} - {None}), "argv": argv,
            "env": container_env(container, image, extra_env or {}),
            "workdir": container.get("workingDir", image["workdir"]), "hardened": hardened}
    spec_path = ROOT / f"{name}.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    (out / f"{name}.spec.json").write_text(json.dumps(spec, indent=1))
    log = (out / f"{name}.log").open("wb")
    say(f"start {name}: {' '.join(argv)}")
    return subprocess.Popen(["unshare", *NS_FLAGS, sys.executable, __file__, "enter", str(spec_path)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            for child in map(int, children):
                if child not in found:
                    found.append(child)
                    todo.append(child)
    return found


def process_facts(pid: int) -> dict:
    """What the kernel says of one process of the pod: identity, capabilities, no_new_privs, seccomp, root."""
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":\t" in line)
    root = next(line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/")
    return {"pid": pid, "cmd": Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:160],
            **{key: status.get(key, "").strip() for key in
               ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")},
            "root_mount_options": root[5]}


def wait_health(proc: subprocess.Popen, deadline_s: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < deadline_s:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before /health answered")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - began
        except OSError:
            pass
        time.sleep(2)
    raise SystemExit(f"/health did not answer within {deadline_s:.0f} s")


def stop(proc: subprocess.Popen, grace_s: float) -> dict:
    """SIGTERM to the container's PID 1, as the kubelet sends it; SIGKILL after the grace period."""
    if proc.poll() is not None:
        return {"seconds": 0.0, "killed_after_grace": False, "exit_code": proc.returncode, "processes_left": [],
                "note": "the server had already exited"}
    pids = descendants(proc.pid)
    init = pids[0] if pids else proc.pid
    began = time.monotonic()
    os.kill(init, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        killed = True
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    return {"seconds": round(time.monotonic() - began, 1), "killed_after_grace": killed, "exit_code": proc.returncode,
            "processes_left": left}


def run(rehearsal: Path, out: Path, compare_rounds: int = 0) -> int:
    """The pod: its init container, then the server, the helm test and the note's workload through it.
    With COMPARE_ROUNDS, after the init container: the comparison of a plain and a hardened server instead."""
    sys.path.insert(0, str(REPO))
    from lab.hubfake import HubFake

    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "phases": {}}
    docs = documents(rehearsal / "manifest.yaml")
    deployment, configmap = find(docs, "Deployment"), find(docs, "ConfigMap")
    pod = deployment["spec"]["template"]["spec"]
    fs_group = pod["securityContext"]["fsGroup"]
    record["notes"] = install_standin(rehearsal)

    meta = json.loads((rehearsal / "model.json").read_text())
    hub = HubFake().start()
    files = {p.relative_to(rehearsal / "model").as_posix(): p.read_bytes()
             for p in sorted((rehearsal / "model").rglob("*")) if p.is_file()}
    sha = hub.publish(meta["repo_id"], files)
    assert sha == meta["revision"], f"the hub stand-in gave {sha}, the chart was rendered for {meta['revision']}"
    record["notes"].append(f"HF_ENDPOINT set to the hub stand-in at {hub.url} (rendered: the same host, port 0)")

    volumes = prepare_volumes(pod, configmap, fs_group)
    init = pod["initContainers"][0]
    began = time.monotonic()
    fetch = start("fetch-model", init, pod, volumes, IMAGE_STANDINS["server"], out, {"HF_ENDPOINT": hub.url})
    fetch.wait(timeout=300)
    record["phases"]["fetch"] = {"exit_code": fetch.returncode, "seconds": round(time.monotonic() - began, 1),
                                 "files_downloaded": len(hub.requests_for("GET", "/resolve/"))}
    say("fetch", record["phases"]["fetch"])
    if fetch.returncode != 0:
        return finish(record, out, 1)

    server_container = pod["containers"][0]
    startup = server_container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    deadline = min(budget, float(os.environ.get("TPSERVE_READY_DEADLINE_S", budget)))
    grace = pod["terminationGracePeriodSeconds"]
    if compare_rounds:
        record["comparison"] = compare(compare_rounds, rehearsal, server_container, pod, volumes, out, deadline, grace)
        hub.stop()
        ok = all(len(record["comparison"].get(mode, {}).get("rounds", [])) == compare_rounds
                 for mode in ("plain", "hardened"))
        return finish(record, out, 0 if ok else 1, "pod-comparison.json")
    server = start("server", server_container, pod, volumes, IMAGE_STANDINS["server"], out)
    try:
        ready = wait_health(server, deadline)
        record["phases"]["server_ready_seconds"] = round(ready, 1)
        say(f"/health after {ready:.0f} s (the chart's startup budget: {budget} s)")
        record["processes"] = [process_facts(pid) for pid in descendants(server.pid)]
        if shutil.which("nvidia-smi"):
            record["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                check=False, capture_output=True, text=True).stdout.strip().splitlines()
        for label, manifest in (("helm-test", "manifest.yaml"), ("note-workload", "manifest-note.yaml")):
            record["phases"][label] = load(label, rehearsal / manifest, out)
        record["notes"].append("load tests: the rendered test pod's --host (the Service's DNS name) points at "
                               f"127.0.0.1:{PORT}, the server's port on the shared host network")
    except SystemExit as failure:
        record["error"] = str(failure)
        say("error:", failure)
    finally:
        record["phases"]["shutdown"] = stop(server, grace)
        say("shutdown", record["phases"]["shutdown"])
        hub.stop()
    ok = "error" not in record and all(record["phases"].get(k, {}).get("exit_code") == 0
                                       for k in ("fetch", "helm-test", "note-workload"))
    return finish(record, out, 0 if ok else 1)


def load(label: str, manifest: Path, out: Path) -> dict:
    """The rendered helm test pod, run to completion against the server; its figures."""
    test_pod = find(documents(manifest), "Pod", test=True)
    container = test_pod["spec"]["containers"][0]
    container = {**container,
                 "args": [f"http://127.0.0.1:{PORT}" if a.startswith("http://") else a for a in container["args"]],
                 "env": [*container["env"], {"name": "TPSERVE_RESULTS_JSON", "value": f"/results/{label}.json"}]}
    volumes = prepare_volumes(test_pod["spec"], {}, 1000)
    began = time.monotonic()
    proc = start(label, container, test_pod["spec"], volumes, IMAGE_STANDINS["loadtest"], out)
    proc.wait(timeout=420)
    phase = {"exit_code": proc.returncode, "seconds": round(time.monotonic() - began, 1)}
    result_file = Path(volumes["results"]["source"]) / f"{label}.json"
    if result_file.exists():
        shutil.copy(result_file, out / f"{label}.json")
        result = json.loads(result_file.read_text())
        phase.update({key: result.get(key) for key in ("completed", "failed", "output_throughput", "median_ttft_ms",
                                                       "median_tpot_ms", "token_check")})
    say(label, phase)
    return phase


def compare(rounds: int, rehearsal: Path, container: dict, pod: dict, volumes: dict, out: Path,
            deadline: float, grace: int) -> dict:
    """The hardened server, then the same server on the same volumes as root with nothing dropped: the note's
    workload ROUNDS times on each, so hardening's cost is a ratio. Hardened goes first: files a root server
    leaves on the cache volume are not writable for the pod's uid afterwards (fsGroup's OnRootMismatch
    re-labels only a volume whose root is off), so the reverse order fails on the compile cache."""
    figures: dict[str, dict] = {}
    for mode in ("hardened", "plain"):
        server = start(f"server-{mode}", container, pod, volumes, IMAGE_STANDINS["server"], out,
                       hardened=mode == "hardened")
        try:
            entry = {"ready_seconds": round(wait_health(server, deadline), 1), "rounds": []}
            for index in range(rounds):
                entry["rounds"].append(load(f"note-{mode}-{index}", rehearsal / "manifest-note.yaml", out))
        except SystemExit as failure:
            entry = {"error": str(failure)}
        finally:
            entry["shutdown"] = stop(server, grace)
        figures[mode] = entry
        say(mode, entry)
    tok_s = {mode: sorted(r["output_throughput"] for r in entry.get("rounds", []) if r.get("output_throughput"))
             for mode, entry in figures.items()}
    if all(len(values) == rounds for values in tok_s.values()):
        medians = {mode: values[rounds // 2] for mode, values in tok_s.items()}
        figures["median_output_throughput"] = medians
        figures["hardened_over_plain"] = round(medians["hardened"] / medians["plain"], 3)
    return figures


def finish(record: dict, out: Path, code: int, name: str = "pod-rehearsal.json") -> int:
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record["passed"] = code == 0
    (out / name).write_text(json.dumps(record, indent=2))
    say("passed" if code == 0 else "FAILED")
    return code


if __name__ == "__main__":
    if sys.argv[1] == "enter":
        enter(sys.argv[2])
    elif sys.argv[1] == "run":
        sys.exit(run(Path(sys.argv[2]), Path(sys.argv[3])))
    elif sys.argv[1] == "compare":
        sys.exit(run(Path(sys.argv[2]), Path(sys.argv[3]), compare_rounds=int(sys.argv[4])))
    else:
        raise SystemExit(__doc__)
