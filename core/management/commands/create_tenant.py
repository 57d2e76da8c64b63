"""`manage.py create_tenant SLUG [--name NAME]`: the first step of onboarding a factory."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core import services
from core.models import Tenant


def tenant_by_slug(slug: str) -> Tenant:
    """The tenant a command names, or an error that says how to create it."""
    try:
        return Tenant.objects.get(slug=slug)
    except Tenant.DoesNotExist:
        raise CommandError(
            f"No tenant with slug {slug!r}. Create it with 'manage.py create_tenant {slug}'."
        ) from None


class Command(BaseCommand):
    help = "Create a tenant and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Letters, digits, '-' and '_', e.g. 'acme'.")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug).")

    def handle(self, *, slug: str, name: str, **options: Any) -> None:
        try:
            tenant = services.create_tenant(slug=slug, name=name)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items())
            raise CommandError(f"Tenant {slug!r} was not created. {problems}") from None
        self.stdout.write(f"Created tenant {tenant.slug!r} ({tenant.name}) with id {tenant.id}")
