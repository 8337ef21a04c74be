"""The cluster's certificates: one CA, a serving certificate for the API server, a client certificate for
each part (named as Kubernetes' default RBAC expects), and the service-account signing key. The aggregation
layer has a CA of its own (front-proxy-ca): the API server proxies to extension API servers (KEDA's metrics
API server) with its client certificate, and they trust the user it names only from that CA.

Made fresh by every `up` and removed by `down`: a test cluster's keys live exactly as long as it does.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from versions import API_SERVICE_IP, CLUSTER_DOMAIN, NODE_IP, NODE_NAME

VALID_FOR = datetime.timedelta(days=7)

# file stem -> (common name, organization): the identities the API server's default RBAC binds.
CLIENTS = {
    "admin": ("tpserve-admin", "system:masters"),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    "kube-proxy": ("system:kube-proxy", None),
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
}
FRONT_PROXY_CLIENT = "front-proxy-client"
# Add-ons that run as host processes on the node and serve TLS: their certificates, from the cluster's CA (an
# APIService's caBundle), valid for the node's address and loopback. Client and server both: KEDA's operator and
# its metrics API server talk mutual TLS with one certificate.
ADDON_CERTIFICATES = {"keda": ("keda-operator.keda.svc", "keda-metrics-apiserver.keda.svc")}
API_SERVER_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    f"kubernetes.default.svc.{CLUSTER_DOMAIN}", "localhost")
API_SERVER_IPS = (NODE_IP, API_SERVICE_IP, "127.0.0.1")


def _name(common: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if organization:
        parts.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(subject: x509.Name, key, issuer: x509.Name, issuer_key, *, ca: bool = False,
           usages: tuple = (), names: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + VALID_FOR)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=not ca, key_cert_sign=ca,
                                            crl_sign=ca, content_commitment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True))
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if names or ips:
        alt = [x509.DNSName(name) for name in names] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> None:
    """Write ca, apiserver, every client of CLIENTS (.crt and .key) and sa.key/sa.pub into FOLDER."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("tpserve-cluster-ca")
    ca = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    _write_key(folder / "ca.key", ca_key)
    _write_cert(folder / "ca.crt", ca)

    server_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(folder / "apiserver.key", server_key)
    _write_cert(folder / "apiserver.crt", _issue(_name("kube-apiserver"), server_key, ca_name, ca_key,
                                                 usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
                                                 names=API_SERVER_NAMES, ips=API_SERVER_IPS))
    for stem, (common, organization) in CLIENTS.items():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(folder / f"{stem}.key", key)
        _write_cert(folder / f"{stem}.crt", _issue(_name(common, organization), key, ca_name, ca_key,
                                                   usages=(ExtendedKeyUsageOID.CLIENT_AUTH,)))

    for stem, names in ADDON_CERTIFICATES.items():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(folder / f"{stem}.key", key)
        _write_cert(folder / f"{stem}.crt", _issue(_name(stem), key, ca_name, ca_key,
                                                   usages=(ExtendedKeyUsageOID.SERVER_AUTH,
                                                           ExtendedKeyUsageOID.CLIENT_AUTH),
                                                   names=(*names, "localhost"), ips=(NODE_IP, "127.0.0.1")))

    proxy_ca_key = ec.generate_private_key(ec.SECP256R1())
    proxy_ca_name = _name("tpserve-front-proxy-ca")
    _write_key(folder / "front-proxy-ca.key", proxy_ca_key)
    _write_cert(folder / "front-proxy-ca.crt", _issue(proxy_ca_name, proxy_ca_key, proxy_ca_name, proxy_ca_key,
                                                      ca=True))
    proxy_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(folder / f"{FRONT_PROXY_CLIENT}.key", proxy_key)
    _write_cert(folder / f"{FRONT_PROXY_CLIENT}.crt", _issue(_name(FRONT_PROXY_CLIENT), proxy_key, proxy_ca_name,
                                                            proxy_ca_key, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,)))

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(folder / "sa.key", sa_key)
    (folder / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def serving_certificate(ca_folder: Path, cert: Path, key: Path, common: str, ips: tuple[str, ...],
                        names: tuple[str, ...] = ()) -> None:
    """A server certificate for IPS (and DNS NAMES) signed by the cluster's CA (in CA_FOLDER): what the API server
    trusts when it calls a webhook served on the host (the webhook configuration's caBundle is that CA), or an
    APIService's Service, whose name.namespace.svc it checks."""
    ca_key = serialization.load_pem_private_key((ca_folder / "ca.key").read_bytes(), password=None)
    ca_name = x509.load_pem_x509_certificate((ca_folder / "ca.crt").read_bytes()).subject
    server_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(key, server_key)
    _write_cert(cert, _issue(_name(common), server_key, ca_name, ca_key, usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
                             names=names, ips=ips))
