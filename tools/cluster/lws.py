"""The LeaderWorkerSet controller (sigs.k8s.io/lws) as a host process beside the node, for multiNode.

Its release runs it in a pod behind a webhook Service, with its own certificate rotation and leader election. Here
it runs from the built module on the host with the admin kubeconfig, leader election off (one process), and its
certificate rotation off: the webhooks are not optional, so they are served on the node's address with a
certificate from the cluster's CA. The pod webhook is what labels each pod with its worker index and injects
LWS_LEADER_ADDRESS, LWS_WORKER_INDEX and LWS_GROUP_SIZE, which the chart's commands read; without it the controller
makes pods that cannot start vLLM. The webhook configurations and both CRDs come from the pinned module (its
config/), with the release's object selectors (config/webhook's patches) and a URL in place of the Service.

`start` applies the CRDs, starts the controller, waits until its webhooks answer, then registers them; `stop`
unregisters them, stops the process and removes the CRDs, so the shared cluster is as it was (a
LeaderWorkerSet webhook left registered with no server would refuse every LeaderWorkerSet). `down` stops it too
(node.stop_all). Its files live in STATE/lws, its log in LOGS/lws-controller.log.
"""

from __future__ import annotations

import base64
import copy
import socket
import ssl
from pathlib import Path

import build
import crds
import node
import pki
import start
import yaml
from configs import PKI
from node import ClusterError
from versions import KUBECONFIG, LOGS, NODE_IP, STATE

NAME = "lws-controller"
API = "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"
HOME = STATE / "lws"
LOG = LOGS / f"{NAME}.log"
# Beside the release's defaults (9443, :8081), which KEDA's parts also take.
WEBHOOK_PORT = 9445
HEALTH = "127.0.0.1:9446"
# The release's namePrefix (config/default/kustomization.yaml).
PREFIX = "lws-"
READY_TIMEOUT_S = 180
# Both CRDs of the module (config/crd/bases/GROUP_PLURAL.yaml): the controller also runs the DisaggregatedSet
# controller, which fails without its CRD.
CRDS = ("leaderworkersets.leaderworkerset.x-k8s.io", "disaggregatedsets.disaggregatedset.x-k8s.io")
# kind -> name, as webhook_configurations makes them.
WEBHOOK_CONFIGURATIONS = {"MutatingWebhookConfiguration": f"{PREFIX}mutating-webhook-configuration",
                          "ValidatingWebhookConfiguration": f"{PREFIX}validating-webhook-configuration"}


def configuration() -> dict:
    """The controller's --config: webhooks on the node's address with certificates from HOME/certs, no
    certificate rotation, no leader election, no metrics server, health on loopback."""
    return {"apiVersion": "config.lws.x-k8s.io/v1alpha1", "kind": "Configuration",
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {"host": NODE_IP, "port": WEBHOOK_PORT, "certDir": str(HOME / "certs")},
            "health": {"healthProbeBindAddress": HEALTH},
            "metrics": {"bindAddress": "0"}}


def _patched(document: dict, patches: list[dict]) -> dict:
    """DOCUMENT after kustomize's JSON patches of config/webhook (each replaces one webhook)."""
    document = copy.deepcopy(document)
    for patch in patches:
        parts = patch["path"].strip("/").split("/")
        if patch["op"] != "replace" or parts[0] != "webhooks" or len(parts) != 2:
            raise ClusterError(f"lws.py applies only replacements of one webhook, not {patch}: extend _patched")
        document["webhooks"][int(parts[1])] = patch["value"]
    return document


def webhook_configurations(module: Path, ca_bundle: bytes) -> list[dict]:
    """The module's webhook configurations as its release installs them, each calling the controller at its URL on
    the node's address and trusting CA_BUNDLE."""
    folder = module / "config" / "webhook"
    patches = {"MutatingWebhookConfiguration": yaml.safe_load((folder / "mutating-patch.yaml").read_text()),
               "ValidatingWebhookConfiguration": yaml.safe_load((folder / "validating-patch.yaml").read_text())}
    made = []
    for document in yaml.safe_load_all((folder / "manifests.yaml").read_text()):
        if not document:
            continue
        document = _patched(document, patches[document["kind"]])
        document["metadata"]["name"] = PREFIX + document["metadata"]["name"]
        for webhook in document["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"https://{NODE_IP}:{WEBHOOK_PORT}{path}",
                                       "caBundle": base64.b64encode(ca_bundle).decode()}
        made.append(document)
    return made


def crd_path(module: Path, name: str) -> Path:
    plural, group = name.split(".", 1)
    return module / "config" / "crd" / "bases" / f"{group}_{plural}.yaml"


def _webhook_serves() -> bool:
    """True once the webhook server completes a TLS handshake with the certificate the API server will check; it
    registers its handlers before it listens."""
    context = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    try:
        with socket.create_connection((NODE_IP, WEBHOOK_PORT), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=NODE_IP):
            return True
    except OSError:
        return False


def start_controller() -> list[str]:
    """Build (or reuse), apply the CRDs, start the controller and register its webhooks once they answer; a no-op
    when it runs. What it made, one line each."""
    if node.running(NAME):
        return []
    folder, _ = build.build("lws")
    module = crds.module_dir(API, offline=False)
    (HOME / "certs").mkdir(parents=True, exist_ok=True)
    pki.serving_certificate(PKI, HOME / "certs" / "tls.crt", HOME / "certs" / "tls.key", NAME, (NODE_IP,))
    (HOME / "config.yaml").write_text(yaml.safe_dump(configuration(), sort_keys=False))
    for name in CRDS:
        start.kubectl("apply", "--server-side", "-f", str(crd_path(module, name)))
    start.kubectl("wait", "--for", "condition=Established", f"--timeout={READY_TIMEOUT_S}s",
                  *(f"crd/{name}" for name in CRDS))
    node.start(NAME, [str(folder / NAME), f"--config={HOME / 'config.yaml'}", f"--kubeconfig={KUBECONFIG}"])
    alive = node.alive(NAME, "the LeaderWorkerSet controller")
    node.wait_until("the LeaderWorkerSet controller's webhooks to answer", lambda: alive() or _webhook_serves(),
                    READY_TIMEOUT_S, LOG)
    configurations = webhook_configurations(module, (PKI / "ca.crt").read_bytes())
    start.apply(configurations)
    return [*(f"crd {name}" for name in CRDS), f"process {NAME} ({node.running(NAME)})",
            *(f"{document['kind']} {document['metadata']['name']}" for document in configurations)]


def stop_controller() -> list[str]:
    """Unregister the webhooks, stop the process, remove the CRDs (and so every LeaderWorkerSet)."""
    undone = []
    for kind, name in WEBHOOK_CONFIGURATIONS.items():
        if start.kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False).stdout.strip():
            undone.append(f"{kind} {name}")
    if stopped := node.stop_named(NAME):
        undone.append(stopped)
    for name in CRDS:
        if start.kubectl("delete", "crd", name, "--ignore-not-found", "--timeout=120s", check=False).stdout.strip():
            undone.append(f"crd {name}")
    return undone
