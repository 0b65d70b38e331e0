"""The current account's admin and its Dynamics connection: the one check every Connections
page makes (Http404 for a connection of another account, ``NotAnAdmin`` for a member)."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from accounts.access import current_membership
from accounts.models import Membership
from connections.models import DynamicsConnection


def admin_connection(
    request: HttpRequest, connection_id: int | None = None
) -> tuple[Membership, DynamicsConnection]:
    """The current account's admin membership and its Dynamics connection (404 otherwise)."""
    admin = current_membership(request, admin=True)
    connections = DynamicsConnection.objects.filter(account=admin.account)
    if connection_id is not None:
        connections = connections.filter(pk=connection_id)
    return admin, get_object_or_404(connections.select_related("account__entra_app"))
