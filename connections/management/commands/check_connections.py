"""`manage.py check_connections [--account ID] [--json]`: prove every connection works now.

For each connection: a silent token (refreshed when needed) and a WhoAmI call; the status and
last verified time are updated. Exits 1 if any connection is not Connected, so cron or a
monitor can alert. Safe on many processes at once: each refresh holds the connection's row
lock, and status updates touch only the health fields.
"""

import json
import logging

from django.core.management.base import BaseCommand, CommandError

from connections.health import CheckResult, connection_check
from connections.models import DynamicsConnection

logger = logging.getLogger("dynamics_connect.connections")


class Command(BaseCommand):
    help = "Check every Dynamics connection (token + WhoAmI) and update its status."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--account", help="Check only this account id.")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print JSON instead of a table."
        )

    def handle(self, *args, account=None, as_json=False, **options) -> None:
        connections = DynamicsConnection.objects.select_related("account").order_by("pk")
        if account:
            connections = connections.filter(account__account_id=account)
            if not connections.exists():
                raise CommandError(f"No connection for account {account}.")
        rows = []
        for connection in connections.iterator(chunk_size=100):
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
            rows.append(
                {
                    "account": connection.account.account_id,
                    "org": connection.org_url,
                    "status": connection.get_status_display(),
                    "ok": result.ok,
                    "code": result.code,
                    "detail": result.detail,
                }
            )
        self.stdout.write(json.dumps(rows, indent=2) if as_json else self._table(rows))
        failed = sum(not row["ok"] for row in rows)
        if failed:
            raise CommandError(
                f"{failed} of {len(rows)} connection(s) not Connected.", returncode=1
            )

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
