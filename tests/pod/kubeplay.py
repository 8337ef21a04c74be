"""The chart's rendered objects played with ``podman kube play``, and what podman cannot do like Kubernetes.

:func:`adapt_for_podman` is the one place that changes the rendered manifest. Each change it makes is
returned as a sentence, printed by the test and listed in docs/pod-test.md; everything else is played as
helm rendered it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

# Objects podman cannot play, or has nothing to apply them to; what stands in for each.
NOT_PLAYED = {
    "Service": "not played (podman has no Services): the server's port is published on the host instead",
    "NetworkPolicy": "not played (podman enforces no network policies)",
    "PersistentVolumeClaim": "not played: the test makes the podman volume of that name itself, so that it "
                             "outlives each play as a claim outlives its pods",
    "PodDisruptionBudget": "not played (no evictions under podman)",
    "ServiceMonitor": "not played (no Prometheus operator)",
}


INIT_TYPE = "io.podman.annotations.init.container.type"


@dataclass(frozen=True)
class Site:
    """What the host gives the played pod: the claim's volume, a tmpfs for /dev/shm, a published port."""

    claim_volume: str
    claim_path: Path
    shm_volume: str
    host_port: int
    host_address: str
    results_dir: Path


def run(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}")
    return done


def adapt_for_podman(objects: list[dict], site: Site) -> tuple[list[dict], dict | None, list[str]]:
    """The server's objects and the `helm test` pod, changed only where podman differs from Kubernetes.

    Returns (objects to play for the server, the test pod or None, the changes as sentences).
    """
    changes: list[str] = []
    server: list[dict] = []
    test_pod = None
    for original in objects:
        obj = copy.deepcopy(original)
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in NOT_PLAYED:
            changes.append(f"{kind} {name}: {NOT_PLAYED[kind]}")
            if kind == "PersistentVolumeClaim":
                changes.append(f"PersistentVolumeClaim {name}: the volume's root is chowned to 1000:1000, as "
                               "fsGroup: 1000 would make it (podman ignores fsGroup)")
        elif kind == "Secret":
            raise AssertionError("podman kube play rejects kind: Secret; the chart must not render one here")
        elif kind == "Pod" and obj["metadata"].get("annotations", {}).get("helm.sh/hook") == "test":
            test_pod = obj
            changes += _adapt_test_pod(obj, site)
        elif kind == "Deployment":
            template = obj["spec"]["template"]
            annotations, dropped = _short_annotations(template["metadata"])
            changes += [f"Deployment {name}: {line}" for line in dropped]
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"{name}-pod-0", "labels": template["metadata"]["labels"],
                                "annotations": {**annotations, INIT_TYPE: "always"}},
                   "spec": template["spec"]}
            changes.append(f"Deployment {name}: played as its pod template, a Pod named {name}-pod-0 as podman names "
                           f"a Deployment's pod, annotated {INIT_TYPE}=always: podman removes an init container "
                           "that succeeded unless told so (only on kind Pod, in 4.3), and the test reads its "
                           "exit status and log as `kubectl logs -c fetch-model` would")
            changes += _adapt_server_pod(pod["spec"], name, site)
            server.append(pod)
        else:
            server.append(obj)
    return server, test_pod, changes


def helm_test_manifest(server: list[dict], test_pod: dict) -> list[dict]:
    """The test pod with the ConfigMaps it mounts: podman resolves a configMap volume only from the played file."""
    mounted = {volume["configMap"]["name"] for volume in test_pod["spec"]["volumes"] if "configMap" in volume}
    return [obj for obj in server if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] in mounted] + [test_pod]


def _short_annotations(metadata: dict) -> tuple[dict, list[str]]:
    """METADATA's annotations without values over 63 characters, which podman 4.3 refuses on kind Pod."""
    kept, dropped = {}, []
    for key, value in metadata.get("annotations", {}).items():
        if len(value) > 63:
            dropped.append(f"pod annotation {key} dropped: podman 4.3 refuses annotation values over 63 "
                           "characters on kind Pod (Kubernetes' limit for label values, not annotations)")
        else:
            kept[key] = value
    return kept, dropped


def _adapt_server_pod(pod: dict, name: str, site: Site) -> list[str]:
    changes = [(f"Pod {name}-pod-0: restartPolicy Never instead of Always (a Deployment's only policy; podman "
                "would restart a failed init container forever, Kubernetes with back-off): a failed fetch ends "
                "the pod, and the test reads the init container's exit status and message")]
    pod["restartPolicy"] = "Never"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    containers = pod["initContainers"] + pod["containers"]
    for spec in containers:
        for mount in spec.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume and "subPath" in mount:
                sub = mount.pop("subPath")
                alias = f"{mount['name']}-{sub}"
                volumes[alias] = {"name": alias, "hostPath": {"path": str(site.claim_path / sub),
                                                              "type": "Directory"}}
                mount["name"] = alias
                changes.append(f"{spec['name']}: {mount['mountPath']} (claim {volume['persistentVolumeClaim']['claimName']}, "
                               f"subPath {sub}{', read-only' if mount.get('readOnly') else ''}) mounts that folder "
                               f"of the volume as a hostPath, because podman ignores subPath; the folder is made "
                               f"first, owned by uid 1000 as the init container makes it before the kubelet "
                               f"would mount it for the server")
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] = site.claim_volume
        empty = volume.get("emptyDir")
        if empty is None:
            continue
        if empty.get("medium") == "Memory":
            del volume["emptyDir"]
            volume["persistentVolumeClaim"] = {"claimName": site.shm_volume}
            changes.append(f"emptyDir {volume['name']} (medium Memory, sizeLimit {empty.get('sizeLimit')}): a tmpfs "
                           f"podman volume of that size, because podman ignores medium and sizeLimit")
        elif "sizeLimit" in empty:
            changes.append(f"emptyDir {volume['name']}: sizeLimit {empty['sizeLimit']} not enforced (podman ignores "
                           "it); left as rendered")
    pod["volumes"] = list(volumes.values())
    for spec in pod["containers"]:
        removed = [probe for probe in ("startupProbe", "readinessProbe", "livenessProbe") if spec.pop(probe, None)]
        if removed:
            changes.append(f"{spec['name']}: {', '.join(removed)} removed (podman ignores them); the test polls "
                           "/health itself, with the startup probe's budget as its deadline")
        if spec.pop("lifecycle", None):
            changes.append(f"{spec['name']}: preStop hook removed (the test stops the pod itself)")
        for port in spec.get("ports", []):
            if port["containerPort"] == 8000:
                port["hostPort"] = site.host_port
                changes.append(f"{spec['name']}: port 8000 published on host port {site.host_port}, the "
                               "Service's stand-in")
    if pod.get("securityContext", {}).get("runAsNonRoot"):
        changes.append("runAsNonRoot: kept, but podman ignores it; the test checks the server's uid itself")
    return changes


def _adapt_test_pod(pod: dict, site: Site) -> list[str]:
    pod["metadata"]["annotations"], dropped = _short_annotations(pod["metadata"])
    changes = [f"helm test pod {pod['metadata']['name']}: {line}" for line in dropped]
    (spec,) = pod["spec"]["containers"]
    args = spec["args"]
    service_url = args[args.index("--host") + 1]
    published = f"http://{site.host_address}:{site.host_port}"
    args[args.index("--host") + 1] = published
    spec["env"].append({"name": "TPSERVE_RESULTS_JSON", "value": "/results/helm-test.json"})
    for volume in pod["spec"]["volumes"]:
        if volume["name"] == "results":
            volume.pop("emptyDir")
            volume["hostPath"] = {"path": str(site.results_dir), "type": "Directory"}
    return changes + [(f"helm test pod {pod['metadata']['name']}: --host {service_url} (the Service) becomes "
                       f"{published} (the published port); TPSERVE_RESULTS_JSON added and /results on a host "
                       "folder, so the test reads the figures; image, command, other args and env as rendered; "
                       "played with the ConfigMap it mounts, which podman reads only from the played file")]


def write_manifest(path: Path, objects: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def play(manifest: Path) -> None:
    run("podman", "kube", "play", "--network", "podman", str(manifest), timeout=300)


def down(manifest: Path) -> None:
    run("podman", "kube", "down", str(manifest), timeout=300, check=False)


@dataclass(frozen=True)
class State:
    status: str
    exit_code: int
    started_at: str
    finished_at: str
    pid: int


def state(container: str) -> State | None:
    """The container's state, or None when there is no such container."""
    done = run("podman", "inspect", "--type", "container", "--format", "json", container, check=False)
    if done.returncode != 0:
        return None
    found = json.loads(done.stdout)[0]["State"]
    return State(found["Status"], found["ExitCode"], found["StartedAt"], found["FinishedAt"], found["Pid"])


def pod_containers(pod: str) -> list[str]:
    done = run("podman", "ps", "--all", "--filter", f"pod={pod}", "--format", "{{.Names}}")
    return done.stdout.split()


def logs(container: str) -> str:
    done = run("podman", "logs", container, check=False)
    return done.stdout + done.stderr


def wait_for(what: str, condition: Callable[[], object], deadline_s: float, interval_s: float = 1.0):
    """Poll CONDITION until it returns something true, or fail after DEADLINE_S naming WHAT."""
    end = time.monotonic() + deadline_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline_s:.0f} s")
        time.sleep(interval_s)


def http_status(url: str, timeout_s: float = 5.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None
