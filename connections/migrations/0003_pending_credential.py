from django.db import migrations, models


class Migration(migrations.Migration):
    """A pending row's credential may be a certificate's private key: one field for either."""

    dependencies = [
        ("connections", "0002_move_app_registration"),
    ]

    operations = [
        migrations.RenameField(
            model_name="pendingauthorization",
            old_name="client_secret_encrypted",
            new_name="credential_encrypted",
        ),
        migrations.AddField(
            model_name="pendingauthorization",
            name="certificate_pem",
            field=models.TextField(blank=True, default=""),
        ),
    ]
