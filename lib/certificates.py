"""Self-signed X.509 certificates for an app registration's certificate credential.

``generate`` makes an RSA key pair and a certificate naming it; the private key is handed back
wrapped (``Secret``) for the caller to encrypt at rest, and never leaves the product: only the
certificate (PEM or DER) is offered for upload to the app registration. ``load`` reads a
stored certificate back for its thumbprints and validity, which are known exactly.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from lib.secret import Secret

KEY_SIZE = 2048


class InvalidCertificate(ValueError):
    """The text is not one PEM certificate."""


@dataclass(frozen=True)
class Certificate:
    """A public certificate (PEM), with what the portal and the Connections page show of it."""

    pem: str
    sha1_thumbprint: str  # upper-case hex, as the Azure portal lists it
    sha256_thumbprint: str  # lower-case hex
    not_before: dt.datetime
    not_after: dt.datetime
    subject: str

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.pem.encode()).public_bytes(
            serialization.Encoding.DER
        )

    @property
    def x5t_s256(self) -> str:
        """The ``x5t#S256`` value a client assertion names this certificate with."""
        digest = bytes.fromhex(self.sha256_thumbprint)
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def load(pem: str) -> Certificate:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise InvalidCertificate("not a PEM certificate") from None
    return Certificate(
        pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        sha1_thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 # nosec B303
        sha256_thumbprint=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        subject=cert.subject.rfc4514_string(),
    )


def generate(common_name: str, *, valid_days: int) -> tuple[Secret, Certificate]:
    """A new RSA key pair and a self-signed certificate for it, valid from now (less a few
    minutes of clock skew) for ``valid_days``: the private key (PEM, wrapped) and the
    certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return Secret(private_pem), load(cert.public_bytes(serialization.Encoding.PEM).decode())
