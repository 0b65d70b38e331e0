"""`manage.py check_connections [--account ID] [--json]`: prove every connection works now.

For each connection: a forced token refresh, a WhoAmI call and a one-row read of each table the
product needs; the status and last verified time are updated. Disconnected connections are left
alone, and so is one Dynamics asked to wait (until its Retry-After). Exits 1 if any connection
is broken (busy is not broken), so cron or a monitor can alert. Safe on many processes at once:
each connection is claimed by one process (a lease), each refresh holds its row lock, and status
updates touch only the health fields. What a check finds reaches the account's admins by
e-mail, once per event (``connections/notices.py``).
"""

import json
import logging

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from connections.health import (
    CheckResult,
    connection_check,
    connection_claim_for_check,
    connection_release_check,
)
from connections.models import DynamicsConnection
from connections.notices import connection_notify

logger = logging.getLogger("dynamics_connect.connections")


class Command(BaseCommand):
    help = "Check every Dynamics connection (token + WhoAmI) and update its status."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--account", help="Check only this account id.")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print JSON instead of a table."
        )
        parser.add_argument(
            "--quiet", action="store_true", help="Print nothing (the exit status still tells)."
        )

    def handle(self, *args, account=None, as_json=False, quiet=False, **options) -> None:
        connections = DynamicsConnection.objects.select_related("account").order_by("pk")
        if account:
            connections = connections.filter(account__account_id=account)
            if not connections.exists():
                raise CommandError(f"No connection for account {account}.")
        rows = []
        for connection in connections.iterator(chunk_size=100):
            skipped = self._not_due(connection)
            if skipped is not None:
                rows.append(skipped)
                continue
            try:
                result = connection_check(connection=connection)
            except Exception as error:  # one broken connection must not stop the others
                logger.exception(
                    "check failed unexpectedly",
                    extra={"event": "check_connections", "account": connection.account.account_id},
                )
                result = CheckResult(
                    connection,
                    False,
                    f"Unexpected error ({type(error).__name__}); see the log.",
                    "unexpected_error",
                )
            finally:
                connection_release_check(connection)
            try:
                connection_notify(connection=connection)
            except Exception:  # a failed notice must not stop the other checks
                logger.exception(
                    "notice failed unexpectedly",
                    extra={"event": "notice", "account": connection.account.account_id},
                )
            rows.append(
                {
                    "account": connection.account.account_id,
                    "org": connection.org_url,
                    "status": connection.get_status_display(),
                    "ok": result.ok or result.busy,  # throttling is not a broken connection
                    "code": result.code,
                    "detail": result.detail,
                }
            )
        if not quiet:
            self.stdout.write(json.dumps(rows, indent=2) if as_json else self._table(rows))
        failed = sum(not row["ok"] for row in rows)
        if failed:
            raise CommandError(
                f"{failed} of {len(rows)} connection(s) not Connected.", returncode=1
            )

    @staticmethod
    def _not_due(connection) -> dict | None:
        """The row of a connection this run leaves alone (disconnected; Dynamics asked to
        wait; another process checks it now), or None to check it."""
        row = {"account": connection.account.account_id, "org": connection.org_url, "code": ""}
        status = connection.get_status_display()
        if connection.status == DynamicsConnection.Status.DISCONNECTED:
            return {**row, "status": status, "ok": True, "detail": "Disconnected: not checked."}
        until = connection.retry_after_until
        if until is not None and until > timezone.now():
            detail = f"Dynamics asked to wait: next try after {until:%Y-%m-%d %H:%M:%S}."
            return {**row, "status": status, "ok": True, "code": "throttled", "detail": detail}
        if not connection_claim_for_check(connection):
            return {**row, "status": status, "ok": True, "detail": "Checked by another process."}
        return None

    @staticmethod
    def _table(rows: list[dict]) -> str:
        if not rows:
            return "No connections."
        headers = ("account", "org", "status", "detail")
        table = [headers, *[tuple(str(row[h]) for h in headers) for row in rows]]
        widths = [max(len(line[i]) for line in table) for i in range(len(headers) - 1)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
            + "  "
            + line[-1]
            for line in table
        )
