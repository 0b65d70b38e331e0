from django.db import migrations


class Migration(migrations.Migration):
    """The tenant lives on the account's EntraApp now (filled by connections 0002)."""

    dependencies = [
        ("accounts", "0003_entraapp"),
        ("connections", "0002_move_app_registration"),
    ]

    operations = [
        migrations.RemoveField(model_name="account", name="tenant_id"),
    ]
