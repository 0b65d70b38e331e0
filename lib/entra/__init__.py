"""Microsoft Entra ID through MSAL: the only package that imports ``msal``.

Protocol only, no product words: errors carry a code, a correlation id and a ``Remedy``; the
sentences a person reads live with the product (``accounts/aadsts.py``).
"""


def reset_process_caches() -> None:
    """Forget what this process cached of Entra ID: discovery documents, throttling, keys."""
    from lib.entra import http, id_token

    http.forget_documents()
    id_token.forget_keys()
