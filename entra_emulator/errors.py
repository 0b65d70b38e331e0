"""The AADSTS codes the emulator produces, with Entra's `error` values and (abridged) texts.

Texts follow what login.microsoftonline.com says closely enough that a person recognises them;
callers must never branch on the text, only on `error` and the code (as with real Entra).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Code:
    """One catalogue entry.

    `error` is the OAuth `error` value at the token endpoint (and the default elsewhere);
    `authorize_error` overrides it for redirects from /authorize; `page` codes are shown on
    Entra's own error page instead of being redirected to the (untrusted) redirect URI.
    """

    error: str
    message: str
    authorize_error: str | None = None
    suberror: str | None = None
    page: bool = False


CATALOGUE: dict[int, Code] = {
    50011: Code(
        "invalid_request",
        "The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
        "URIs configured for the application '{client_id}'. Make sure the redirect URI sent in "
        "the request matches one added to your application in the Azure portal. Navigate to "
        "https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
        page=True,
    ),
    50020: Code(
        "invalid_request",
        "User account '{upn}' from identity provider '{idp}' does not exist in tenant "
        "'{tenant_name}' and cannot access the application '{client_id}'({app_name}) in that "
        "tenant. The account needs to be added as an external user in the tenant first. Sign out "
        "and sign in again with a different Azure Active Directory user account.",
    ),
    50034: Code(
        "invalid_request",
        "The user account {upn} does not exist in the directory. To sign into this application, "
        "the account must be added to the directory.",
    ),
    50058: Code(
        "invalid_grant",
        "A silent sign-in request was sent but no user is signed in.",
        authorize_error="login_required",
    ),
    50076: Code(
        "invalid_grant",
        "Due to a configuration change made by your administrator, or because you moved to a new "
        "location, you must use multi-factor authentication to access '{resource}'.",
        authorize_error="interaction_required",
        suberror="basic_action",
    ),
    50105: Code(
        "invalid_grant",
        "Your administrator has configured the application {app_name} ('{client_id}') to block "
        "users unless they are specifically granted ('assigned') access to the application. The "
        "signed in user '{upn}' is blocked because they are not a direct member of a group with "
        "access, nor had access directly assigned by an administrator. Please contact your "
        "administrator to assign access to this application.",
        authorize_error="access_denied",
    ),
    50173: Code(
        "invalid_grant",
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
        "The user might have changed or reset their password. The grant was issued on "
        "'{issued}' and the TokensValidFrom date (before which tokens are not valid) for this "
        "user is '{valid_from}'.",
    ),
    50194: Code(
        "invalid_request",
        "Application '{client_id}'({app_name}) is not configured as a multi-tenant application. "
        "Usage of the /common endpoint is not supported for such applications created after "
        "'10/15/2018'. Use a tenant-specific endpoint or configure the application to be "
        "multi-tenant.",
        page=True,
    ),
    53003: Code(
        "invalid_grant",
        "Access has been blocked by Conditional Access policies. The access policy does not "
        "allow token issuance.",
        authorize_error="access_denied",
    ),
    54005: Code(
        "invalid_grant",
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or "
        "use an existing refresh token.",
    ),
    65001: Code(
        "invalid_grant",
        "The user or administrator has not consented to use the application with ID "
        "'{client_id}' named '{app_name}'. Send an interactive authorization request for this "
        "user and resource.",
        authorize_error="consent_required",
        suberror="consent_required",
    ),
    65004: Code("access_denied", "User declined to consent to access the app."),
    70000: Code(
        "invalid_grant",
        "The provided value for the '{parameter}' parameter is not valid.",
    ),
    70003: Code(
        "unsupported_grant_type",
        "The app requested an unsupported grant type '{grant_type}'.",
    ),
    70005: Code(
        "unsupported_response_type",
        "response_type '{response_type}' is not enabled for the application.",
    ),
    70007: Code(
        "invalid_request",
        "The application '{app_name}' asked for a response mode '{response_mode}' that is not "
        "supported.",
    ),
    70008: Code(
        "invalid_grant",
        "The provided authorization code or refresh token has expired due to inactivity. Send a "
        "new interactive authorization request for this user and resource.",
    ),
    70011: Code(
        "invalid_scope",
        "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' "
        "is not valid.",
    ),
    90002: Code(
        "invalid_tenant",
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
        page=True,
    ),
    90094: Code(
        "invalid_grant",
        "Admin consent is required for the permissions requested by this application.",
        authorize_error="access_denied",
    ),
    500011: Code(
        "invalid_resource",
        "The resource principal named {resource} was not found in the tenant named "
        "{tenant_name}. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You might have "
        "sent your authentication request to the wrong tenant.",
    ),
    500112: Code(
        "invalid_grant",
        "The reply address '{redirect_uri}' does not match the reply address "
        "'{expected_redirect_uri}' provided when requesting Authorization code.",
    ),
    501481: Code(
        "invalid_grant",
        "The Code_Verifier does not match the code_challenge supplied in the authorization "
        "request.",
    ),
    650057: Code(
        "invalid_client",
        "Invalid resource. The client has requested access to a resource which is not listed in "
        "the requested permissions in the client's application registration. Client app ID: "
        "{client_id}({app_name}). Resource value from request: {resource}. Resource app ID: "
        "00000007-0000-0000-c000-000000000000. List of valid resources from app registration: "
        "{permissions}.",
    ),
    700005: Code(
        "invalid_grant",
        "Provided Authorization Code is intended to use against other tenant, thus rejected.",
    ),
    700016: Code(
        "unauthorized_client",
        "Application with identifier '{client_id}' was not found in the directory '{tenant}'. "
        "This can happen if the application has not been installed by the administrator of the "
        "tenant or consented to by any user in the tenant. You may have sent your authentication "
        "request to the wrong tenant.",
        page=True,
    ),
    700082: Code(
        "invalid_grant",
        "The refresh token has expired due to inactivity. The token was issued on '{issued}' "
        "and was inactive for {inactive}.",
    ),
    900144: Code(
        "invalid_request",
        "The request body must contain the following parameter: '{parameter}'.",
    ),
    7000215: Code(
        "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
    ),
    7000218: Code(
        "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    7000222: Code(
        "invalid_client",
        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure "
        "portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
        "using certificate credentials for added security: https://aka.ms/certCreds.",
    ),
    9002313: Code("invalid_grant", "Invalid request. Request is malformed or invalid."),
    700021: Code(
        "invalid_client",
        "Client assertion application identifier doesn't match 'client_id' parameter. Review "
        "the documentation at https://aka.ms/certCreds.",
    ),
    700023: Code(
        "invalid_client",
        "Invalid audience '{audience}' in the client assertion. Expected the token endpoint "
        "'{expected}'.",
    ),
    700024: Code(
        "invalid_client",
        "Client assertion is not within its valid time range. Review the documentation at "
        "https://aka.ms/certCreds.",
    ),
    700027: Code(
        "invalid_client",
        "The certificate with identifier used to sign the client assertion is not registered "
        "on application '{client_id}', or the assertion's signature is not valid. [Reason - "
        "The key was not found.] Review the documentation at https://aka.ms/certCreds.",
    ),
    50059: Code(
        "invalid_request",
        "No tenant-identifying information found in either the request or implied by any "
        "provided credentials.",
    ),
    1002012: Code(
        "invalid_scope",
        "The provided value for scope {scope} is not valid. Client credential flows must have a "
        "scope value with /.default suffixed to the resource identifier (application ID URI).",
    ),
}

#: For codes a test injects that the catalogue does not know.
_UNKNOWN = Code("invalid_request", "Error injected by the Entra emulator.")


class _Details(dict[str, str]):
    """Template values; a placeholder nobody filled in reads as '...' rather than failing."""

    def __missing__(self, key: str) -> str:
        return "..."


class AadstsError(Exception):
    """An Entra error: raised by the endpoints, rendered as JSON, a redirect or a page."""

    def __init__(
        self, code: int, *, error: str | None = None, claims: str | None = None, **details: str
    ) -> None:
        self.code = code
        self.claims = claims  # a Conditional Access claims challenge, for the client to send
        self.entry = CATALOGUE.get(code, _UNKNOWN)
        self.message = self.entry.message.format_map(_Details(details))
        self._error = error
        super().__init__(self.description)

    @property
    def description(self) -> str:
        return f"AADSTS{self.code}: {self.message}"

    @property
    def error(self) -> str:
        """The `error` value at the token endpoint (and for discovery)."""
        return self._error or self.entry.error

    @property
    def authorize_error(self) -> str:
        """The `error` value when redirecting back from /authorize."""
        return self._error or self.entry.authorize_error or self.entry.error

    @property
    def suberror(self) -> str | None:
        """Only meaningful with the catalogue's own `error` value."""
        return None if self._error else self.entry.suberror

    @property
    def page(self) -> bool:
        return self.entry.page

    @property
    def status(self) -> int:
        return 401 if self.error == "invalid_client" else 400


def entra_timestamp(now: datetime | None = None) -> str:
    """Entra's timestamp format: `2016-01-09 02:02:12Z`."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%SZ")


def correlation_id_from(header_value: str | None) -> str:
    """Entra echoes the caller's `client-request-id` as the correlation id when it is a GUID."""
    try:
        return str(uuid.UUID(header_value or ""))
    except ValueError:
        return str(uuid.uuid4())


def error_body(
    err: AadstsError, *, trace_id: str, correlation_id: str, error_uri_base: str
) -> dict[str, object]:
    """Entra's error JSON for the token and discovery endpoints."""
    timestamp = entra_timestamp()
    body: dict[str, object] = {
        "error": err.error,
        "error_description": (
            f"{err.description} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {timestamp}"
        ),
        "error_codes": [err.code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{error_uri_base}/error?code={err.code}",
    }
    if err.suberror:
        body["suberror"] = err.suberror
    if err.claims:
        body["claims"] = err.claims
    return body
