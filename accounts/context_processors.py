from django.http import HttpRequest

from accounts.access import CURRENT_ACCOUNT_SESSION_KEY
from accounts.models import Membership


def current_account(request: HttpRequest) -> dict:
    """The account this session works in, for the navigation: the membership the view already
    checked, or one query."""
    user = getattr(request, "user", None)  # absent when a request fails before middleware
    if user is None or not user.is_authenticated:
        return {}
    account_id = request.session.get(CURRENT_ACCOUNT_SESSION_KEY, "")
    checked = getattr(request, "checked_membership", None)
    if checked is not None and checked.account.account_id == account_id:
        role = checked.role
    else:
        role = (
            Membership.objects.filter(account__account_id=account_id, user=user, is_blocked=False)
            .values_list("role", flat=True)
            .first()
        )
    if role is None:
        return {}
    return {"current_account_id": account_id, "current_is_admin": role == Membership.Role.ADMIN}
