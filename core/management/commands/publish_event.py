"""`manage.py publish_event`: publish one event by hand, e.g. to try a worker end to end."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core import services
from core.management.commands.create_tenant import tenant_by_slug
from core.models import Message


def parse_data(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"--data must be a JSON object, like '{{\"key\": 1}}', not {raw!r}.")
    return data


class Command(BaseCommand):
    help = "Publish one event for a tenant and show which workers it was addressed to."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument(
            "--type",
            required=True,
            help="Any type of the catalog, the platform's own included (POST /api/events "
            "takes factory events only).",
        )
        parser.add_argument("--data", required=True, metavar="JSON", help="A JSON object.")
        parser.add_argument("--source", default="")
        parser.add_argument("--source-id", default="")
        parser.add_argument("--correlation-id", default="")

    def handle(
        self,
        *,
        tenant: str,
        type: str,
        data: str,
        source: str,
        source_id: str,
        correlation_id: str,
        **options: Any,
    ) -> None:
        payload = parse_data(data)
        try:
            envelope = services.publish(
                tenant=tenant_by_slug(tenant),
                type=type,
                data=payload,
                source=source,
                source_id=source_id,
                correlation_id=correlation_id,
            )
        except ValidationError as exc:  # UnknownEventType's message lists the known types
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"Published {type} for tenant {tenant!r}, eventId {envelope.event_id}")
        workers = sorted(
            Message.objects.filter(event_id=envelope.event_id).values_list("worker", flat=True)
        )
        if workers:
            self.stdout.write(f"Addressed to: {', '.join(workers)}")
        else:
            self.stdout.write("Addressed to no worker: no built worker subscribes to it yet.")
