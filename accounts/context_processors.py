from django.http import HttpRequest

from accounts.access import CURRENT_ACCOUNT_SESSION_KEY
from accounts.models import Membership


def current_account(request: HttpRequest) -> dict:
    """The account this session works in, for the navigation (one query when signed in)."""
    user = getattr(request, "user", None)  # absent when a request fails before middleware
    if user is None or not user.is_authenticated:
        return {}
    account_id = request.session.get(CURRENT_ACCOUNT_SESSION_KEY, "")
    role = (
        Membership.objects.filter(account__account_id=account_id, user=user, is_blocked=False)
        .values_list("role", flat=True)
        .first()
    )
    if role is None:
        return {}
    return {"current_account_id": account_id, "current_is_admin": role == Membership.Role.ADMIN}
