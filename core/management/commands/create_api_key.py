"""`manage.py create_api_key --tenant SLUG [--name NAME]`: a key for a tenant's producers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from core import services
from core.management.commands.create_tenant import tenant_by_slug


class Command(BaseCommand):
    help = "Issue an API key for a tenant and print it, the only time it is ever shown."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument("--name", default="", help="What the key is for, e.g. 'ci'.")

    def handle(self, *, tenant: str, name: str, **options: Any) -> None:
        plain = services.issue_api_key(tenant=tenant_by_slug(tenant), name=name)
        # Only a digest is stored, so this output is the one chance to copy the key.
        self.stdout.write(
            f"API key for tenant {tenant!r}:\n\n    {plain}\n\n"
            "Store it now: it will not be shown again. Send it with every API request as\n\n"
            f"    Authorization: Bearer {plain}"
        )
