from django.db import migrations

TEMPLATES = [
    {"slug": "gemma4-26b", "name": "Gemma 4 26B A4B", "model_id": "gemma4:26b"},
    {"slug": "qwen3-6-27b", "name": "Qwen3.6 27B A4B", "model_id": "qwen3.6:27b"},
]
PACK_HOURS_OPTIONS = [1, 8, 24, 168]


def seed(apps, schema_editor):
    Template = apps.get_model("deployments", "Template")
    for template in TEMPLATES:
        Template.objects.get_or_create(
            slug=template["slug"],
            defaults={**template, "pack_hours_options": PACK_HOURS_OPTIONS, "is_active": True},
        )


def unseed(apps, schema_editor):
    Template = apps.get_model("deployments", "Template")
    Template.objects.filter(
        slug__in=[t["slug"] for t in TEMPLATES], deployments__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("deployments", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
