# Service tokens moved here from `keys`: the table (keys_servicetoken) stays where it is; only
# Django's idea of which app owns the model changes (keys.0002 drops it from `keys`' state).

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('keys', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='ServiceToken',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('role', models.CharField(choices=[('proxy', 'Proxy'), ('provisioner', 'Provisioner')], max_length=16)),
                        ('digest', models.CharField(editable=False, max_length=64, unique=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'keys_servicetoken',
                        'ordering': ['-created_at'],
                    },
                ),
            ],
        ),
    ]
