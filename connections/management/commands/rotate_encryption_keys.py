"""`manage.py rotate_encryption_keys`: re-encrypt every stored secret with the newest key.

Put a new key first in FIELD_ENCRYPTION_KEYS, run this, then remove the old key. Works in
batches, is idempotent (values already under the newest key are left alone), and reports a
value no key opens (account id and field) without stopping: that connection is marked
Needs re-authentication, since only a new sign-in can store it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from django.core.management.base import BaseCommand
from django.db import models, transaction

from accounts.models import EntraApp
from connections.health import connection_record_failure, undecryptable
from connections.models import DynamicsConnection, PendingAuthorization
from lib import crypto

BATCH_SIZE = 200


def _batches(queryset: models.QuerySet) -> Iterator[list[models.Model]]:
    """Rows in primary-key order, each batch locked inside its own transaction."""
    last_pk = None
    while True:
        with transaction.atomic():
            rows = queryset.select_for_update().order_by("pk")
            if last_pk is not None:
                rows = rows.filter(pk__gt=last_pk)
            batch = list(rows[:BATCH_SIZE])
            if not batch:
                return
            yield batch
            last_pk = batch[-1].pk


class Command(BaseCommand):
    help = "Re-encrypt stored client secrets and token caches with the newest key."

    def handle(self, *args, **options) -> None:
        self.counts = {"rotated": 0, "current": 0, "undecryptable": 0}
        for batch in _batches(EntraApp.objects.select_related("account")):
            for app in batch:
                self._rotate(app, "credential_encrypted", app.credential_context(), self._lost_app)
        for batch in _batches(DynamicsConnection.objects.select_related("account")):
            for connection in batch:
                self._rotate(
                    connection,
                    "token_cache_encrypted",
                    connection.token_cache_context(),
                    self._lost_token_cache,
                )
        for batch in _batches(PendingAuthorization.objects.all()):
            for pending in batch:
                # Pending credentials live minutes: drop those no key opens.
                self._rotate(
                    pending, "credential_encrypted", pending.credential_context(), _discard
                )
        self.stdout.write(
            f"Re-encrypted {self.counts['rotated']} value(s); {self.counts['current']} already "
            f"used the newest key; {self.counts['undecryptable']} could not be decrypted."
        )

    def _rotate(
        self,
        row: models.Model,
        field: str,
        context: str,
        lost: Callable[[models.Model], None],
    ) -> None:
        ciphertext = getattr(row, field)
        if not ciphertext:
            return
        if crypto.is_encrypted_with_newest_key(ciphertext):
            self.counts["current"] += 1
            return
        try:
            setattr(row, field, crypto.reencrypt(ciphertext, context=context))
        except crypto.UndecryptableValue:
            self.counts["undecryptable"] += 1
            lost(row)
            return
        self.counts["rotated"] += 1
        row.save(update_fields=[field])

    def _lost_app(self, app: EntraApp) -> None:
        self._report_lost(app.account.account_id, "client secret")
        connection = DynamicsConnection.objects.select_related("account").get(account=app.account)
        connection_record_failure(connection, undecryptable("secret"))

    def _lost_token_cache(self, connection: DynamicsConnection) -> None:
        self._report_lost(connection.account.account_id, "token cache")
        connection_record_failure(connection, undecryptable("token_cache"))

    def _report_lost(self, account_id: str, what: str) -> None:
        self.stderr.write(
            f"account {account_id}: the {what} cannot be decrypted with any configured key; "
            "marked Needs re-authentication."
        )


def _discard(pending: PendingAuthorization) -> None:
    pending.delete()
