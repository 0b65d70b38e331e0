import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """The company's Entra app registration gets its own home (its rows: connections 0002)."""

    dependencies = [
        ("accounts", "0002_cache_table"),
    ]

    operations = [
        migrations.CreateModel(
            name="EntraApp",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("client_id", models.CharField(max_length=36)),
                ("tenant_id", models.CharField(db_index=True, max_length=36)),
                ("credential_kind", models.CharField(choices=[("secret", "Client secret")], default="secret", max_length=16)),
                ("credential_encrypted", models.TextField()),
                ("credential_set_at", models.DateTimeField()),
                ("credential_expires_on", models.DateField(blank=True, null=True)),
                ("version", models.PositiveIntegerField(default=1)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("account", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="entra_app", to="accounts.account")),
            ],
        ),
    ]
