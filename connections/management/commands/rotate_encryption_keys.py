"""`manage.py rotate_encryption_keys`: re-encrypt every stored secret with the newest key.

Put a new key first in FIELD_ENCRYPTION_KEYS, run this, then remove the old key. Works in
batches, is idempotent (values already under the newest key are left alone), and reports a
value no key opens (account id and field) without stopping: that connection is marked
Needs re-authentication, since only a new sign-in can store it again.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from connections import crypto
from connections.models import DynamicsConnection, PendingAuthorization

BATCH_SIZE = 200


class Command(BaseCommand):
    help = "Re-encrypt stored client secrets and token caches with the newest key."

    def handle(self, *args, **options) -> None:
        counts = {"rotated": 0, "current": 0, "undecryptable": 0}
        last_pk = 0
        while True:
            with transaction.atomic():
                batch = list(
                    DynamicsConnection.objects.select_for_update()
                    .select_related("account")
                    .filter(pk__gt=last_pk)
                    .order_by("pk")[:BATCH_SIZE]
                )
                if not batch:
                    break
                for connection in batch:
                    self._rotate_connection(connection, counts)
                last_pk = batch[-1].pk
        self._rotate_pending(counts)
        self.stdout.write(
            f"Re-encrypted {counts['rotated']} value(s); {counts['current']} already used the "
            f"newest key; {counts['undecryptable']} could not be decrypted."
        )

    def _rotate_connection(self, connection: DynamicsConnection, counts: dict) -> None:
        fields = {
            "client_secret_encrypted": connection.secret_context(),
            "token_cache_encrypted": connection.token_cache_context(),
        }
        changed = []
        for field, context in fields.items():
            ciphertext = getattr(connection, field)
            if not ciphertext:
                continue
            if crypto.is_encrypted_with_newest_key(ciphertext):
                counts["current"] += 1
                continue
            try:
                setattr(connection, field, crypto.reencrypt(ciphertext, context=context))
            except crypto.UndecryptableValue as problem:
                counts["undecryptable"] += 1
                self.stderr.write(
                    f"account {connection.account.account_id}: {field} cannot be decrypted "
                    "with any configured key; marked Needs re-authentication."
                )
                connection.mark_needs_reauthorization(
                    code="undecryptable_" + field.removesuffix("_encrypted"), message=str(problem)
                )
                continue
            counts["rotated"] += 1
            changed.append(field)
        if changed:
            connection.save(update_fields=[*changed, "updated_at"])

    @transaction.atomic
    def _rotate_pending(self, counts: dict) -> None:
        """Pending credentials live minutes; rotate them too, and drop those no key opens."""
        for pending in PendingAuthorization.objects.select_for_update():
            ciphertext = pending.client_secret_encrypted
            if crypto.is_encrypted_with_newest_key(ciphertext):
                counts["current"] += 1
                continue
            try:
                pending.client_secret_encrypted = crypto.reencrypt(
                    ciphertext, context=pending.secret_context()
                )
            except crypto.UndecryptableValue:
                counts["undecryptable"] += 1
                pending.delete()
                continue
            counts["rotated"] += 1
            pending.save(update_fields=["client_secret_encrypted"])
