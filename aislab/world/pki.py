"""The lab's certificate authority: the service is told to trust it (SSL_CERT_FILE), so the
fake outside world (LLM provider, telemetry collector, the egress witness) can speak TLS under
any name and read what is sent to it."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_PEM = serialization.Encoding.PEM


def write_private(path: Path, data: bytes) -> None:
    """Write a key (or anything secret) readable by its owner only, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def subject_alt_names(names) -> list[x509.GeneralName]:
    """Server names and IP addresses, each as what it is."""
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    return sans


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> "CA":
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("aislab CA"))
            .issuer_name(_name("aislab CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def save(self, directory: Path) -> Path:
        write_private(directory / "ca.key", self.key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        path = directory / "ca.pem"
        path.write_bytes(self.cert.public_bytes(_PEM))
        return path

    @classmethod
    def load(cls, directory: Path) -> "CA":
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        return cls(key, x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes()))

    def issue(self, *names: str) -> tuple[bytes, bytes]:
        """(cert PEM, key PEM) for server names and/or IP addresses."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        sans = subject_alt_names(names)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(_PEM), key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class SNIContexts:
    """A server-side TLS context that presents a lab-CA certificate for whatever name the client asks."""

    def __init__(self, ca: CA, workdir: Path, default_name: str):
        self.ca = ca
        self.workdir = workdir
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.names: dict[int, str] = {}  # id(ssl socket) -> the server name it asked for
        self.default = self._context(default_name)
        self.default.sni_callback = self._pick

    def _context(self, name: str) -> ssl.SSLContext:
        if name not in self.contexts:
            cert, key = self.ca.issue(name)
            path = self.workdir / f"cert-{hashlib.sha256(name.encode()).hexdigest()[:16]}.pem"
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            write_private(tmp, cert + key)
            tmp.replace(path)  # atomic: two threads asking for one name never read half a file
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(path)
            self.contexts[name] = ctx
        return self.contexts[name]

    def _pick(self, sslobj, server_name: str | None, _ctx) -> None:
        if server_name:
            self.names[id(sslobj)] = server_name
            sslobj.context = self._context(server_name)
