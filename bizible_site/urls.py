from django.contrib import admin
from django.urls import path

from accounts import views as account_views
from accounts.signin import SignInHandler
from connections import certificate_views
from connections import views as connection_views
from connections.consent import AdminConsentHandler
from connections.reauthorize import ReauthorizeHandler
from connections.signup import SignupHandler
from lib.entra.django import callback_view
from lib.entra.types import Purpose

# Who completes each kind of flow that comes back to /OAuth2 (see lib/entra/django.py).
oauth2_callback = callback_view(
    {
        Purpose.SIGN_IN: SignInHandler,
        Purpose.SIGNUP: SignupHandler,
        Purpose.REAUTHORIZE: ReauthorizeHandler,
        Purpose.ADMIN_CONSENT: AdminConsentHandler,
    },
    unknown_flow=account_views.unknown_flow,
)

urlpatterns = [
    path("", account_views.landing, name="landing"),
    path("healthz", account_views.healthz, name="healthz"),
    path("Dynamics/Signup", connection_views.signup, name="signup"),
    path("Dynamics/Signup/continue", connection_views.signup_continue_view, name="signup_continue"),
    path(
        "Dynamics/Signup/certificate",
        certificate_views.signup_certificate,
        name="signup_certificate",
    ),
    path(
        "Dynamics/Signup/certificate.cer",
        certificate_views.signup_certificate_download,
        name="signup_certificate_download",
    ),
    path("OAuth2", oauth2_callback, name="oauth2_callback"),
    path("business/<str:account_id>", account_views.business, name="business"),
    path("business/<str:account_id>/signin", account_views.business_sign_in, name="sign_in"),
    path("business/<str:account_id>/welcome", account_views.welcome, name="welcome"),
    path("signout", account_views.sign_out, name="sign_out"),
    path("settings/members", account_views.members, name="members"),
    path("settings/members/<int:membership_id>", account_views.member_change, name="member_change"),
    path("settings/connections", connection_views.connections, name="connections"),
    path(
        "settings/connections/emails",
        connection_views.connection_emails,
        name="connection_emails",
    ),
    path(
        "settings/connections/<int:connection_id>/reauthorize",
        connection_views.reauthorize,
        name="reauthorize",
    ),
    path(
        "settings/connections/<int:connection_id>/reauthorize/continue",
        connection_views.reauthorize_continue,
        name="reauthorize_continue",
    ),
    path(
        "settings/connections/<int:connection_id>/certificate",
        certificate_views.connection_certificate,
        name="connection_certificate",
    ),
    path(
        "settings/connections/<int:connection_id>/certificate/new",
        certificate_views.connection_certificate_new,
        name="connection_certificate_new",
    ),
    path(
        "settings/connections/<int:connection_id>/certificate.cer",
        certificate_views.connection_certificate_download,
        name="connection_certificate_download",
    ),
    path(
        "settings/connections/<int:connection_id>/previous-credential",
        certificate_views.previous_credential_dismiss,
        name="previous_credential_dismiss",
    ),
    path(
        "settings/connections/<int:connection_id>/secret-expiry",
        connection_views.secret_expiry,
        name="secret_expiry",
    ),
    path(
        "settings/connections/<int:connection_id>/disconnect",
        connection_views.disconnect,
        name="disconnect",
    ),
    path(
        "settings/connections/<int:connection_id>/test",
        connection_views.test_connection,
        name="test_connection",
    ),
    path("admin/", admin.site.urls),
]
