"""Credentials of machine clients (service tokens). Console sign-in tokens are knox's."""

from __future__ import annotations

from django.db import models


class ServiceRole(models.TextChoices):
    PROXY = "proxy"
    PROVISIONER = "provisioner"


class ServiceToken(models.Model):
    """A credential of a machine client (the proxy, the provisioner).

    Tokens are 256-bit random strings, so a SHA-256 digest is a safe verifier and costs
    microseconds, which matters: the proxy presents one on every lookup.
    """

    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=ServiceRole.choices)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table predates this app (service tokens lived in `keys`).
        db_table = "keys_servicetoken"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.role})"
