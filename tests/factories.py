from __future__ import annotations

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from deployments.models import Deployment, DeploymentStatus, Template


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password("correct horse battery staple")


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Template
        django_get_or_create = ("slug",)

    slug = "gemma4-26b"
    name = "Gemma 4 26B A4B"
    model_id = "gemma4:26b"
    pack_hours_options = [1, 8, 24, 168]
    is_active = True


class DeploymentFactory(factory.django.DjangoModelFactory):
    """A deployment placed directly in a status (tests of transitions use the services)."""

    class Meta:
        model = Deployment

    class Params:
        ready = factory.Trait(
            status=DeploymentStatus.READY, endpoint_url="http://127.0.0.1:9/model"
        )

    owner = factory.SubFactory(UserFactory)
    template = factory.SubFactory(TemplateFactory)
    model_id = factory.LazyAttribute(lambda d: d.template.model_id)
    status = DeploymentStatus.PENDING
    endpoint_url = ""
    pack_ends_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=8))
