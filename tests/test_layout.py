"""The floor plan (SPEC.md section 2), read from the source: every arrow runs one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("accounts", "connections", "bizible_site", "lib")
MAX_MODULE_LINES = 400


def modules(*packages: str) -> list[Path]:
    return sorted(
        path
        for package in packages
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    )


def imported(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names, with the names it
    takes from it (``a.b`` for ``from a import b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offenders(paths: list[Path], *forbidden: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in sorted(imported(path))
        if any(name == f or name.startswith(f"{f}.") for f in forbidden)
    ]


def outside(paths: list[Path], home: str) -> list[Path]:
    return [path for path in paths if not str(path.relative_to(ROOT)).startswith(home)]


def test_only_lib_entra_imports_msal():
    assert offenders(outside(modules(*PRODUCT), "lib/entra/"), "msal") == []


def test_only_lib_crypto_imports_fernet():
    product = outside(modules(*PRODUCT), "lib/crypto.py")
    assert offenders(product, "cryptography.fernet") == []


def test_lib_imports_no_app_and_nothing_of_the_site():
    assert offenders(modules("lib"), "accounts", "connections", "bizible_site") == []


def test_lib_entra_speaks_neither_to_dynamics_nor_to_the_key_ring():
    assert offenders(modules("lib/entra"), "lib.dynamics", "lib.crypto") == []


def test_accounts_never_imports_connections():
    assert offenders(modules("accounts"), "connections") == []


def test_accounts_never_reaches_into_connections_through_the_orm():
    reached = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in modules("accounts")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "dynamics_connection" in line or "pendingauthorization" in line.lower()
    ]
    assert reached == []


def test_only_the_site_wiring_imports_the_site():
    assert offenders(modules("accounts", "connections", "lib"), "bizible_site") == []


def test_the_product_and_the_emulator_never_import_each_other():
    assert offenders(modules(*PRODUCT), "entra_emulator") == []
    assert offenders(modules("entra_emulator"), *PRODUCT) == []


@pytest.mark.parametrize("path", modules(*PRODUCT), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_product_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def test_the_rules_see_the_imports_they_police(tmp_path):
    """The reader finds plain, dotted and from-imports (a rule that reads nothing passes)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import msal\nfrom cryptography.fernet import Fernet\nimport connections.x\n")

    assert imported(probe) >= {"msal", "cryptography.fernet", "connections.x"}
    assert len(modules("lib/entra")) >= 7


def calls_of(method: str, paths: list[Path]) -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for path in paths
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == method
    }


def test_a_secret_is_revealed_only_where_it_leaves_for_an_outside_system():
    assert calls_of("reveal", modules(*PRODUCT)) == {
        "lib/crypto.py",  # sealed into ciphertext
        "lib/entra/types.py",  # the client credential, for MSAL's token request
        "lib/entra/tokens.py",  # the token cache, for MSAL
        "lib/dynamics/transport.py",  # the access token, in the Authorization header
    }


def test_a_stored_credential_is_decrypted_in_one_place_per_store():
    assert calls_of("decrypt", modules("accounts", "connections", "bizible_site")) == {
        "accounts/models.py",  # EntraApp.credentials(): the account's app
        "connections/pending.py",  # pending_claim(): credentials waiting to be proven
        "connections/health.py",  # the token cache (no client secret)
    }
