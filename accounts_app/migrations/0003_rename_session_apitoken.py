"""The API-token model is called ApiToken; its table stays `sessions` (docs/schema.md).

State only: with `db_table` fixed, RenameModel issues no SQL (nothing else points at the table),
and Django's contenttypes app renames the model's content type along with it, so admin history
keeps pointing at the tokens. The reverse relation on User becomes `api_tokens`.
"""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts_app", "0002_invitation_audit_session_name"),
    ]

    operations = [
        migrations.RenameModel(old_name="Session", new_name="ApiToken"),
        migrations.AlterField(
            model_name="apitoken",
            name="user",
            field=models.ForeignKey(
                on_delete=models.deletion.CASCADE,
                related_name="api_tokens",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
