"""Account isolation in one place: every view that touches an account's data gets it here.

An unknown id, a malformed id and an account the signed-in user may not see all give the same
404, so account ids cannot be enumerated.
"""

from __future__ import annotations

import re

from django.contrib import auth
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from accounts.models import Membership, User

_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


# The account a signed-in user is working in (set at sign-in and signup); the settings pages
# (/settings/...) act on it.
CURRENT_ACCOUNT_SESSION_KEY = "account.current"
# Written by the signup callback: other accounts of the same tenant, to mention on welcome.
SIGNUP_OTHER_ACCOUNTS_SESSION_KEY = "signup.other_accounts"


class NotAnAdmin(PermissionDenied):
    """A member (not an admin) asked for an admin-only page of their own account: a plain 403
    page, since they may know the account exists, they just cannot change it."""


def is_account_id(value: str) -> bool:
    return bool(_ACCOUNT_ID.match(value or ""))


def membership_for(request: HttpRequest, account_id: str, *, admin: bool = False) -> Membership:
    """The signed-in user's active membership of this account, or Http404.

    With ``admin=True``, a member who is not an admin gets ``NotAnAdmin``.
    """
    user = request.user
    if not user.is_authenticated or not is_account_id(account_id):
        raise Http404("No such account.")
    membership = (
        Membership.objects.select_related("account", "user")
        .filter(account__account_id=account_id, user=user, is_blocked=False)
        .first()
    )
    if membership is None:
        raise Http404("No such account.")
    request.checked_membership = membership  # the navigation reuses it (no second query)
    if admin and not membership.is_admin:
        raise NotAnAdmin()
    return membership


def current_membership(request: HttpRequest, *, admin: bool = False) -> Membership:
    """The membership of the account this session works in (see CURRENT_ACCOUNT_SESSION_KEY)."""
    return membership_for(
        request, request.session.get(CURRENT_ACCOUNT_SESSION_KEY, ""), admin=admin
    )


def start_session(request: HttpRequest, user: User, account_id: str) -> None:
    """Sign the user in (a new session key, against fixation) to work in this account."""
    auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[CURRENT_ACCOUNT_SESSION_KEY] = account_id
