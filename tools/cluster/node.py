"""Start and stop the node: its network, its processes, and everything they leave behind.

`up` writes a record of what it changed on the machine (``RUN/made.json``: sysctls with their old values,
interfaces, nftables tables) before changing it, so `down` undoes exactly that, also after a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from versions import API_PORT, BRIDGE, CLUSTER_RANGE, LOGS, NODE_INTERFACE, NODE_IP, POD_CIDR, RUN, STATE

PIDS = RUN / "pids"
MADE = RUN / "made.json"
GUARD_TABLE = ("inet", "tpserve-guard")
# kube-proxy's nftables mode keeps its rules in these two tables.
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
# Pod traffic crosses the host's IP layer (pod -> Service -> pod on the same bridge): forwarding on, and
# bridged packets through nftables so kube-proxy's NAT applies to them.
SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}
# Folders the parts write outside STATE and RUN whatever they are told: containerd's shim sockets and runc's
# state, libcni's result cache, the kubelet's device-plugin socket and its container-log links. `up` records
# what was in them; `down` removes what was not.
HOST_PATHS = (Path("/run/containerd"), Path("/var/lib/cni"), Path("/var/lib/kubelet"), Path("/var/log/containers"))
# Start order; `down` stops them in reverse.
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet",
         "kube-proxy")
# Add-ons started beside a running node (prometheus.py); `down` stops them first.
ADDON_PROCESSES = ("prometheus", "keda-operator", "keda-adapter", "prometheus-adapter", "lws-controller")


class ClusterError(Exception):
    """A step of `up` or `down` that failed; the message names the log to read."""


def sh(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=capture, text=True, check=False)
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(args)} failed ({done.returncode}): {(done.stderr or '').strip()}")
    return done


def wait_until(what: str, condition: Callable[[], object], timeout_s: float, log: Path | None = None):
    """Poll CONDITION until it is truthy; a ClusterError naming WHAT (and LOG) after TIMEOUT_S."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            hint = f"; see {log}" if log else ""
            tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log and log.is_file() else ""
            raise ClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}{hint}{tail}")
        time.sleep(0.5)


# --- what up changes on the machine, recorded first ------------------------------------------------------


def _record(**changes) -> None:
    made = json.loads(MADE.read_text()) if MADE.is_file() else {}
    for key, value in changes.items():
        made.setdefault(key, value)
    MADE.parent.mkdir(parents=True, exist_ok=True)
    MADE.write_text(json.dumps(made, indent=2) + "\n")


def setup_network() -> None:
    """The node's address on an interface of its own, forwarding for the pods, and the guard table: pod traffic
    may go only to addresses inside the cluster's range (this machine's own interfaces answer the rest)."""
    old = {key: (Path("/proc/sys") / key).read_text().strip() for key in SYSCTLS}
    _record(sysctls=old, interfaces=[NODE_INTERFACE, BRIDGE], tables=[list(GUARD_TABLE)],
            tables_before=nft_tables(), host_paths_before={str(path): _tree(path) for path in HOST_PATHS})
    if sh("ip", "link", "show", NODE_INTERFACE, check=False).returncode != 0:
        # This machine kind's kernel has no dummy driver: a bridge with no ports is the same local interface.
        sh("ip", "link", "add", NODE_INTERFACE, "type", "bridge")
    sh("ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_INTERFACE)
    sh("ip", "link", "set", NODE_INTERFACE, "up")
    family, name = GUARD_TABLE
    guard = f"""
table {family} {name} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        ip saddr {POD_CIDR} ip daddr != {CLUSTER_RANGE} counter drop
        ip daddr {POD_CIDR} ip saddr != {CLUSTER_RANGE} counter drop
        meta nfproto ipv6 iifname "{BRIDGE}" counter drop
    }}
}}
"""
    sh("nft", "delete", "table", family, name, check=False)
    done = subprocess.run(["nft", "-f", "-"], input=guard, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ClusterError(f"nft refused the guard table: {done.stderr.strip()}")
    for key, value in SYSCTLS.items():
        (Path("/proc/sys") / key).write_text(value)


def nft_tables() -> list[list[str]]:
    """[family, name] of every nftables table there is now."""
    listing = sh("nft", "list", "tables").stdout.split("\n")
    return [line.split()[1:3] for line in listing if line.startswith("table ")]


def _kube_tables_made_since(before: list[list[str]]) -> list[list[str]]:
    """Tables that appeared since up and hold a chain of Kubernetes' (KUBE-*): iptables-nft's, made by a
    part that talked iptables. Tables that were there before are left alone."""
    made = []
    for family, name in nft_tables():
        if [family, name] in before:
            continue
        listing = sh("nft", "list", "table", family, name, check=False).stdout
        if "chain KUBE-" in listing:
            made.append([family, name])
    return made


def teardown_network(made: dict) -> list[str]:
    undone = []
    for key, value in made.get("sysctls", {}).items():
        try:
            (Path("/proc/sys") / key).write_text(value)
            undone.append(f"sysctl {key}={value}")
        except OSError as error:
            undone.append(f"sysctl {key}: {error}")
    kube_tables = _kube_tables_made_since(made["tables_before"]) if "tables_before" in made else []
    for family, name in [*made.get("tables", []), *KUBE_PROXY_TABLES, *kube_tables]:
        if sh("nft", "delete", "table", family, name, check=False).returncode == 0:
            undone.append(f"nftables table {family} {name}")
    for interface in made.get("interfaces", []):
        if sh("ip", "link", "delete", interface, check=False).returncode == 0:
            undone.append(f"interface {interface}")
    return undone


# --- processes -------------------------------------------------------------------------------------------


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start NAME in a session of its own (it outlives this tool), its output in LOGS/NAME.log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("ab")
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, env={**os.environ, **(env or {})})
    (PIDS / f"{name}.pid").write_text(f"{process.pid}\n")
    return process


def alive(name: str, what: str | None = None) -> Callable[[], None]:
    """A check, for conditions being waited on, that fails loudly (WHAT, or NAME, exited; the tail of its log)
    once the process NAME started has exited."""
    def check() -> None:
        if not running(name):
            log = LOGS / f"{name}.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.is_file() else ""
            raise ClusterError(f"{what or name} exited; see {log}:\n{tail}")
    return check


def running(name: str) -> int | None:
    """The pid of NAME when it is alive."""
    pid_file = PIDS / f"{name}.pid"
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def stop_named(name: str) -> str | None:
    """Stop the process NAME when it runs, and forget its pid: a stopped process may linger as a zombie until init
    reaps it, and a start right after must not take it as running. What was stopped, as a line, or None."""
    pid = running(name)
    if pid:
        stop(pid)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)
    return f"process {name} ({pid})" if pid else None


def token_kubeconfig(path: Path, user: str, token: str, ca: Path) -> Path:
    """A kubeconfig at PATH (mode 0600) for the API server on the node (its certificate signed by CA), as USER with
    the ServiceAccount TOKEN: what a controller beside the node uses where its pod would have the token mounted."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "tpserve", "cluster": {"server": f"https://{NODE_IP}:{API_PORT}",
                                                      "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "tpserve", "context": {"cluster": "tpserve", "user": user}}],
        "current-context": "tpserve"}, sort_keys=False))
    path.chmod(0o600)
    return path


def stop(pid: int, grace_s: float = 15) -> None:
    """SIGTERM PID's whole process group, SIGKILL what is left after GRACE_S."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            if _zombie(pid):
                return
            time.sleep(0.2)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _processes_under(paths: tuple[Path, ...]) -> list[int]:
    """Processes whose command line names one of PATHS: containerd's shims, and the containers they run
    (whose cgroup is the kubelet's kubepods tree)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (entry / "cgroup").read_text()
        except OSError:
            continue
        if any(str(path) in cmdline for path in paths) or "/kubepods" in cgroups:
            found.append(int(entry.name))
    return found


def stop_all() -> list[str]:
    stopped = []
    # Processes started beside the node (the add-ons) go first, while the API server still answers; a pid file of
    # neither ORDER nor ADDON_PROCESSES is one too.
    unnamed = sorted({path.stem for path in PIDS.glob("*.pid")} - set(ORDER) - set(ADDON_PROCESSES)) \
        if PIDS.is_dir() else []
    for name in [*ADDON_PROCESSES, *unnamed, *reversed(ORDER)]:
        pid = running(name)
        if pid:
            stop(pid)
            stopped.append(f"process {name} ({pid})")
    for pid in _processes_under((RUN, STATE)):
        try:
            os.kill(pid, signal.SIGKILL)
            stopped.append(f"process {pid} (a shim or container)")
        except ProcessLookupError:
            pass
    if stopped:
        wait_until("the containers to exit", lambda: not _processes_under((RUN, STATE)), 30)
    return stopped


# --- mounts, cgroups, folders ----------------------------------------------------------------------------


def unmount_under(roots: tuple[Path, ...]) -> list[str]:
    """Unmount every mount point under ROOTS, deepest first (lazily where a busy one resists)."""
    done = []
    for _ in range(5):
        points = sorted({line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                         if any(line.split()[4] == str(root) or line.split()[4].startswith(f"{root}/")
                                for root in roots)}, key=len, reverse=True)
        if not points:
            break
        for point in points:
            if sh("umount", point, check=False).returncode != 0:
                sh("umount", "-l", point, check=False)
            done.append(f"mount {point}")
    return done


def remove_kubepods_cgroups() -> list[str]:
    removed = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            folder.rmdir()
        top.rmdir()
        removed.append(f"cgroup {top}")
    return removed


def _tree(root: Path) -> list[str] | None:
    """Every path under ROOT, relative; None when ROOT does not exist."""
    if not root.exists():
        return None
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def remove_host_paths(before: dict[str, list[str] | None]) -> list[str]:
    removed = []
    for root, listing in before.items():
        root_path = Path(root)
        if not root_path.exists():
            continue
        if listing is None:
            shutil.rmtree(root_path)
            removed.append(f"folder {root_path}")
            continue
        for relative in sorted(set(_tree(root_path)) - set(listing), key=len):
            path = root_path / relative
            if not path.exists() and not path.is_symlink():
                continue  # inside a folder removed already
            if path.is_symlink() or path.is_file() or path.is_socket():
                path.unlink(missing_ok=True)
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            removed.append(f"{'link' if path.is_symlink() else 'path'} {path}")
    return removed


def down() -> list[str]:
    """Undo everything up did; a list of what was undone. Safe to run when nothing is up."""
    made = json.loads(MADE.read_text()) if MADE.is_file() else {}
    undone = stop_all()
    undone += unmount_under((STATE, RUN))
    undone += remove_kubepods_cgroups()
    undone += teardown_network(made)
    undone += remove_host_paths(made.get("host_paths_before", {}))
    for folder in (STATE, RUN):
        if folder.exists():
            shutil.rmtree(folder)
            undone.append(f"folder {folder}")
    return undone
