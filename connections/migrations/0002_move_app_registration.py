from django.db import migrations, models


def move_app_registrations(apps, schema_editor) -> None:
    """Each connection's client id, secret and tenant become its account's EntraApp.

    The secret's ciphertext moves unchanged: it is bound to ``account:<id>:client_secret``,
    which is also the EntraApp's context, so no key is needed here.
    """
    DynamicsConnection = apps.get_model("connections", "DynamicsConnection")
    EntraApp = apps.get_model("accounts", "EntraApp")
    PendingAuthorization = apps.get_model("connections", "PendingAuthorization")
    for connection in DynamicsConnection.objects.iterator(chunk_size=500):
        EntraApp.objects.create(
            account_id=connection.account_id,
            client_id=connection.client_id,
            tenant_id=connection.tenant_id,
            credential_kind="secret",
            credential_encrypted=connection.client_secret_encrypted,
            credential_set_at=connection.secret_set_at,
            credential_expires_on=connection.secret_expires_on,
            version=1,
        )
    # Re-authorizations under way were started on the app as it is now.
    PendingAuthorization.objects.filter(purpose="reauthorize").update(app_version=1)


def restore_connection_fields(apps, schema_editor) -> None:
    DynamicsConnection = apps.get_model("connections", "DynamicsConnection")
    EntraApp = apps.get_model("accounts", "EntraApp")
    for app in EntraApp.objects.iterator(chunk_size=500):
        DynamicsConnection.objects.filter(account_id=app.account_id).update(
            client_id=app.client_id,
            tenant_id=app.tenant_id,
            client_secret_encrypted=app.credential_encrypted,
            secret_set_at=app.credential_set_at,
            secret_expires_on=app.credential_expires_on,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_entraapp"),
        ("connections", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="pendingauthorization",
            name="app_version",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(move_app_registrations, restore_connection_fields),
        migrations.RemoveField(model_name="dynamicsconnection", name="client_id"),
        migrations.RemoveField(model_name="dynamicsconnection", name="client_secret_encrypted"),
        migrations.RemoveField(model_name="dynamicsconnection", name="secret_expires_on"),
        migrations.RemoveField(model_name="dynamicsconnection", name="secret_set_at"),
        migrations.RemoveField(model_name="dynamicsconnection", name="tenant_id"),
    ]
