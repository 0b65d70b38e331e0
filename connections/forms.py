"""Forms validate and normalise only; the Client Secret is write-only (never rendered back)."""

from __future__ import annotations

import re
import unicodedata
import uuid

from django import forms
from django.core.validators import URLValidator

from connections.pending import SubmittedCredential
from lib.dynamics import ORG_URL_HELP, InvalidOrgUrl, normalize_org_url
from lib.secret import Secret

_GUID = re.compile(
    r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$"
)
_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")

CLIENT_ID_HELP = (
    "The Application (client) ID on your Azure app registration's Overview page, like "
    "3f2b6a1c-0d4e-4f5a-9b8c-7d6e5f4a3b2c."
)
CLIENT_SECRET_HELP = (  # help text about the secret, not one: # nosec B105
    "From Certificates & secrets in the Azure portal: copy the secret's Value (shown once when "
    "you create it), not its Secret ID."
)


class ClientIdField(forms.CharField):
    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=64, help_text=CLIENT_ID_HELP, **kwargs)

    def clean(self, value):
        value = super().clean(value)
        match = _GUID.match(value)
        if not match:
            raise forms.ValidationError(
                "The Client Id is a GUID such as 3f2b6a1c-0d4e-4f5a-9b8c-7d6e5f4a3b2c. Copy the "
                "Application (client) ID from the app's Overview page."
            )
        return str(uuid.UUID(match.group(1)))


class ClientSecretField(forms.CharField):
    def __init__(self, **kwargs) -> None:
        super().__init__(
            max_length=1024,
            strip=False,
            help_text=CLIENT_SECRET_HELP,
            widget=forms.PasswordInput(
                render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}
            ),
            **kwargs,
        )

    def clean(self, value):
        value = super().clean(value).strip()
        if not value:
            if not self.required:
                return ""
            raise forms.ValidationError(self.error_messages["required"], code="required")
        if not value.isprintable():
            raise forms.ValidationError("The Client Secret contains characters it never has.")
        if _GUID.match(value):
            raise forms.ValidationError(
                "That is the secret's ID, not its Value. In Certificates & secrets, copy the "
                "Value column (shown only when the secret is created; create a new secret if "
                "it is hidden)."
            )
        return value


class OrgUrlField(forms.CharField):
    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=300, help_text=ORG_URL_HELP, **kwargs)
        self.widget.input_type = "url"

    def clean(self, value):
        value = super().clean(value)
        try:
            return normalize_org_url(value)
        except InvalidOrgUrl as problem:
            raise forms.ValidationError(str(problem)) from None


def normalize_phone(raw: str) -> str:
    """Lenient: digits with usual punctuation, an optional leading + (or 00); E.164 when the
    country code is given, otherwise the digits as typed."""
    text = raw.strip()
    compact = _PHONE_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    digits = compact.removeprefix("+")
    if not digits.isdigit() or not 6 <= len(digits) <= 15:
        raise forms.ValidationError(
            "Enter a phone number using digits, spaces, dashes or brackets, with the country "
            "code if you can (for example +1 425 555 0100)."
        )
    return f"+{digits}" if compact.startswith("+") else digits


def refuse_format_characters(value: str) -> None:
    """Bidi overrides and zero-width characters (Unicode category Cf) show one text and hold
    another: a company name with them could spoof the public sign-in page."""
    if any(unicodedata.category(character) == "Cf" for character in value):
        raise forms.ValidationError(
            "Remove the invisible formatting characters (such as right-to-left marks or "
            "zero-width spaces) from this field.",
            code="format_characters",
        )


CERTIFICATE, SECRET = "certificate", "secret"
CREDENTIAL_HELP = (
    "With a certificate, Dynamics Connect makes a key pair and gives you only the public "
    "certificate to upload to your app registration: there is no secret to copy, and its "
    "expiry is known exactly."
)


def _credential_kind() -> forms.ChoiceField:
    return forms.ChoiceField(
        label="Credential",
        choices=[(CERTIFICATE, "Certificate (recommended)"), (SECRET, "Client secret")],
        initial=CERTIFICATE,
        widget=forms.RadioSelect,
        help_text=CREDENTIAL_HELP,
    )


class _CredentialForm:
    """A client secret is needed only when the credential chosen is a client secret."""

    def clean(self):
        data = super().clean()
        missing = data.get("credential_kind") == SECRET and not data.get("client_secret")
        if missing and "client_secret" not in self.errors:
            self.add_error(
                "client_secret",
                "Enter the client secret's Value, or choose Certificate instead.",
            )
        if data.get("credential_kind") == CERTIFICATE:
            data.pop("client_secret", None)  # never kept, never used
        return data

    def submitted_secret(self) -> tuple[dict, SubmittedCredential]:
        """The cleaned values, and the client secret taken out of them, wrapped."""
        fields = {
            name: value
            for name, value in self.cleaned_data.items()
            if name not in ("credential_kind", "client_secret")
        }
        return fields, SubmittedCredential(Secret(self.cleaned_data["client_secret"]))


class _Form(forms.Form):
    """Labels exactly as written (no trailing colon), as the product's copy specifies; no text
    field takes invisible formatting characters."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.CharField):
                field.validators.append(refuse_format_characters)


class SignupForm(_CredentialForm, _Form):
    """The seed's signup form, in its field order, with the choice of credential."""

    company_name = forms.CharField(label="Company Name", max_length=200)
    phone = forms.CharField(label="Phone Number", max_length=40)
    website = forms.URLField(label="Website", max_length=500, assume_scheme="https")
    client_id = ClientIdField(label="Client Id")
    credential_kind = _credential_kind()
    client_secret = ClientSecretField(label="Client Secret", required=False)
    org_url = OrgUrlField(label="Application Id URL")

    def clean_company_name(self) -> str:
        name = " ".join(self.cleaned_data["company_name"].split())
        if not name:
            raise forms.ValidationError("Enter your company's name.")
        return name

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"])

    def clean_website(self) -> str:
        website = self.cleaned_data["website"]
        URLValidator(schemes=["http", "https"])(website)
        return website


def _secret_expires_on() -> forms.DateField:
    return forms.DateField(
        label="Secret expires on",
        required=False,
        help_text="Optional: the Expires date shown in Certificates & secrets, so we can warn "
        "you 30 days before.",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )


class ReauthorizeForm(_CredentialForm, _Form):
    """New credentials for an existing connection (the key icon's modal)."""

    client_id = ClientIdField(label="Client Id")
    credential_kind = _credential_kind()
    client_secret = ClientSecretField(label="Client Secret", required=False)
    org_url = OrgUrlField(label="Application Id URI")
    secret_expires_on = _secret_expires_on()


class SecretExpiryForm(_Form):
    """The current secret's expiry date, entered on the Connections page."""

    secret_expires_on = _secret_expires_on()
