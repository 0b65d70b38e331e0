"""Local CA, TLS server certificate and token-signing key, kept in the state directory.

Everything is reused across runs when still valid, so a browser or bundle that trusts `ca.pem`
keeps trusting the emulator; only what is missing, expired or inconsistent is regenerated.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
SIGNING_KEY_FILE = "signing-key.pem"

_CA_LIFETIME = timedelta(days=3650)
_SERVER_LIFETIME = timedelta(days=397)  # browsers refuse longer-lived server certificates
_RENEW_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    signing_key: rsa.RSAPrivateKey
    kid: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.server_cert_path, self.server_key_path)
        return context


def ensure_pki(state_dir: Path, host: str) -> Pki:
    """Create or reuse the CA, a server certificate for `host` and the signing key."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = _ensure_ca(state_dir)
    _ensure_server_cert(state_dir, host, ca_cert, ca_key)
    signing_key = _load_key(state_dir / SIGNING_KEY_FILE)
    if signing_key is None:
        signing_key = _new_key()
        _write_key(state_dir / SIGNING_KEY_FILE, signing_key)
    return Pki(
        ca_path=state_dir / CA_FILE,
        server_cert_path=state_dir / SERVER_CERT_FILE,
        server_key_path=state_dir / SERVER_KEY_FILE,
        signing_key=signing_key,
        kid=key_id(signing_key),
    )


def key_id(key: rsa.RSAPrivateKey) -> str:
    """A stable `kid`: base64url of a digest of the public key (27 characters, like Entra's)."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:20]).rstrip(b"=").decode()


def _ensure_ca(state_dir: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    cert = _load_cert(state_dir / CA_FILE)
    key = _load_key(state_dir / CA_KEY_FILE)
    if cert is not None and key is not None and _ca_is_usable(cert, key):
        return cert, key
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Entra Emulator Local CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(state_dir / CA_KEY_FILE, key)
    _write_public(state_dir / CA_FILE, cert.public_bytes(serialization.Encoding.PEM))
    # A new CA invalidates any server certificate signed by the old one.
    (state_dir / SERVER_CERT_FILE).unlink(missing_ok=True)
    return cert, key


def _ensure_server_cert(
    state_dir: Path, host: str, ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey
) -> None:
    wanted = _subject_alt_names(host)
    cert = _load_cert(state_dir / SERVER_CERT_FILE)
    key = _load_key(state_dir / SERVER_KEY_FILE)
    if cert is not None and key is not None and _server_is_usable(cert, key, ca_cert, wanted):
        return
    key = _new_key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _SERVER_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(list(wanted)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(state_dir / SERVER_KEY_FILE, key)
    _write_public(state_dir / SERVER_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))


def _subject_alt_names(host: str) -> set[x509.GeneralName]:
    names: set[x509.GeneralName] = {
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    }
    try:
        names.add(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.add(x509.DNSName(host.lower()))
    return names


def _fresh(cert: x509.Certificate) -> bool:
    now = datetime.now(UTC)
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc > now + _RENEW_MARGIN


def _same_key(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bool:
    return cert.public_key().public_numbers() == key.public_key().public_numbers()


def _ca_is_usable(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bool:
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
    return is_ca and _fresh(cert) and _same_key(cert, key)


def _server_is_usable(
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    wanted: set[x509.GeneralName],
) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
        names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    return _fresh(cert) and _same_key(cert, key) and wanted <= names


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_key(path: Path) -> rsa.RSAPrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key
    return None


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, pem, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _write(path, data, 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically, with the final mode set before any byte lands."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)  # the umask may have narrowed it
    os.replace(tmp, path)
