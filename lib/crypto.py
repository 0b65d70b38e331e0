"""Encryption of values at rest (client secrets, MSAL token caches) with MultiFernet.

Keys come from ``settings.FIELD_ENCRYPTION_KEYS`` (Fernet keys, newest first), never from the
database. The newest key encrypts; every listed key decrypts, so keys rotate without downtime:
put a new key first, run ``manage.py rotate_encryption_keys``, then drop the old key.

Every value is bound to a *context* (for example ``"account:<id>:client_secret"``): the
context is sealed inside the ciphertext and checked on decryption, so a ciphertext copied into
another row or field does not decrypt there. A value that no key opens, or whose context does
not match, raises ``UndecryptableValue``; this module never returns ciphertext as if it were
plaintext and never puts either into an exception message.

This is the only module that imports Fernet.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from lib.secret import Secret

_SEPARATOR = "\x1f"  # ASCII unit separator: cannot appear in a context we build


class UndecryptableValue(Exception):
    """No configured key opens this value (lost or removed key, tampering, or wrong row)."""

    def __init__(self, context: str) -> None:
        super().__init__(
            f"The stored value for {context} cannot be decrypted with the configured "
            "FIELD_ENCRYPTION_KEYS."
        )
        self.context = context


def validate_keys(keys: list[str]) -> list[str]:
    """Problems with a key list, as messages that never include a key (empty list: all good)."""
    if not keys:
        return ["FIELD_ENCRYPTION_KEYS is empty."]
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            problems.append(
                f"Key number {position} in FIELD_ENCRYPTION_KEYS is not a Fernet key "
                "(32 url-safe base64-encoded bytes)."
            )
    return problems


def generate_key() -> str:
    """A new random key for FIELD_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode()


@functools.lru_cache(maxsize=4)
def _keyring(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    """All keys (to decrypt) and the newest key alone."""
    problems = validate_keys(list(keys))
    if problems:
        raise ImproperlyConfigured(" ".join(problems))
    fernets = [Fernet(key) for key in keys]
    return MultiFernet(fernets), fernets[0]


def _current() -> MultiFernet:
    # Keyed on the current setting, so overriding it (tests, rotation) takes effect at once.
    return _keyring(tuple(settings.FIELD_ENCRYPTION_KEYS))[0]


def encrypt(plaintext: str | Secret, *, context: str) -> str:
    """Encrypt with the newest key; returns URL-safe text suitable for a TextField."""
    value = plaintext.reveal() if isinstance(plaintext, Secret) else plaintext
    sealed = f"{context}{_SEPARATOR}{value}".encode()
    return _current().encrypt(sealed).decode("ascii")


def decrypt(ciphertext: str, *, context: str) -> Secret:
    """Decrypt a value written by `encrypt` for the same context, or raise UndecryptableValue."""
    try:
        sealed = _current().decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, UnicodeError, AttributeError):
        raise UndecryptableValue(context) from None
    stored_context, separator, value = sealed.partition(_SEPARATOR)
    if not separator or stored_context != context:
        raise UndecryptableValue(context)
    return Secret(value)


def reencrypt(ciphertext: str, *, context: str) -> str:
    """The same value encrypted with the newest key (checks the context first)."""
    decrypt(ciphertext, context=context)
    try:
        return _current().rotate(ciphertext.encode("ascii")).decode("ascii")
    except InvalidToken:  # pragma: no cover - decrypt above already proved a key opens it
        raise UndecryptableValue(context) from None


def is_encrypted_with_newest_key(ciphertext: str) -> bool:
    try:
        _keyring(tuple(settings.FIELD_ENCRYPTION_KEYS))[1].decrypt(ciphertext.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True
