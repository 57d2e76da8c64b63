"""What a message was about, for the console: the object its envelope's data names (the webhook
delivery a WebhookDeliveryQueued command retries, the OTLP batch a TelemetryBatchReceived
brings), with a link to its page, and the event that started it all.

A dead letter of WebhookDeliveryWorker is a command, so its own type says little: the operator
asks which event was being delivered, to which subscription and URL. Each kind of subject is a
resolver keyed by the data field that names it; `subjects` looks up a page's worth of envelopes
with one query per kind. A domain whose commands name an object of its own adds a resolver to
RESOLVERS.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.urls import reverse


@dataclass(frozen=True)
class Fact:
    """One line of a subject's description on a dead letter's page."""

    name: str
    text: str
    url: str | None = None


@dataclass(frozen=True)
class Subject:
    kind: str  # "webhook delivery"
    label: str  # a line that names it: "DeploymentPromoted to https://..."
    url: str | None  # the subject's admin page
    event_type: str  # the type of the event that started it (a delivery's event, say)
    event_id: str | None
    facts: list[Fact] = field(default_factory=list)
    beside_event: str = ""  # what the label adds to the event's type: "to https://..."


Envelope = Mapping[str, Any]  # an envelope as the dead-letter store keeps it (camelCase)
Resolver = Callable[[dict[uuid.UUID, Envelope]], dict[uuid.UUID, Subject]]


def admin_url(model: str, pk: Any) -> str:
    """The admin change page of a model's object: `admin_url("core.event", pk)`."""
    app_label, model_name = model.split(".")
    return reverse(f"admin:{app_label}_{model_name}_change", args=[pk])


def _webhook_deliveries(named: dict[uuid.UUID, Envelope]) -> dict[uuid.UUID, Subject]:
    from integrations.models import WebhookDelivery

    # The subscription's URL only: a list of dead letters has no use for its secrets.
    found = WebhookDelivery.objects.filter(pk__in=list(named)).values(
        "pk", "event_id", "event_type", "state", "subscription_id", "subscription__url"
    )
    subjects = {}
    for d in found:
        url = d["subscription__url"]
        subjects[d["pk"]] = Subject(
            kind="webhook delivery",
            label=f"{d['event_type']} to {url}",
            url=admin_url("integrations.webhookdelivery", d["pk"]),
            event_type=d["event_type"],
            event_id=str(d["event_id"]),
            beside_event=f"to {url}",
            facts=[
                Fact("delivery", f"{d['pk']} ({d['state']})", None),
                Fact(
                    "subscription",
                    str(d["subscription_id"]),
                    admin_url("integrations.webhooksubscription", d["subscription_id"]),
                ),
                Fact("URL", url),
            ],
        )
    return subjects


def _telemetry_batches(named: dict[uuid.UUID, Envelope]) -> dict[uuid.UUID, Subject]:
    from observability.models import TelemetryBatch

    found = TelemetryBatch.objects.filter(pk__in=list(named)).values(
        "pk", "signal", "items", "rejected", "received_at"
    )
    subjects = {}
    for b in found:
        envelope = named[b["pk"]]
        subjects[b["pk"]] = Subject(
            kind="OTLP batch",
            label=f"{b['signal']} batch of {b['items']}",
            url=admin_url("observability.telemetrybatch", b["pk"]),
            event_type=envelope["type"],
            event_id=envelope["eventId"],
            beside_event=f"a {b['signal']} batch of {b['items']}",
            facts=[
                Fact("batch", f"{b['pk']}: {b['signal']}, {b['items']} items", None),
                Fact("rejected at the edge", str(b["rejected"])),
            ],
        )
    return subjects


# The data field that names a subject, and how to look up a page's worth of them.
RESOLVERS: dict[str, Resolver] = {
    "deliveryId": _webhook_deliveries,
    "batchId": _telemetry_batches,
}


def named_subject(envelope: Envelope) -> tuple[str, uuid.UUID] | None:
    """The data field naming the envelope's subject, and its id; None when it names none (or
    not as an id: data is the producer's to write)."""
    data = envelope.get("data")
    if not isinstance(data, Mapping):
        return None
    for key in RESOLVERS:
        value = data.get(key)
        if isinstance(value, str):
            try:
                return key, uuid.UUID(value)
            except ValueError:
                return None
    return None


def subjects(envelopes: Sequence[Envelope]) -> list[Subject | None]:
    """Each envelope's subject (None: it names none, or it is gone, pruned or deleted with its
    subscription), in order: one query per kind of subject among them."""
    wanted: dict[str, dict[uuid.UUID, Envelope]] = {}
    keys = [named_subject(e) for e in envelopes]
    for key, envelope in zip(keys, envelopes, strict=True):
        if key is not None:
            wanted.setdefault(key[0], {})[key[1]] = envelope
    found = {kind: RESOLVERS[kind](named) for kind, named in wanted.items()}
    return [None if key is None else found[key[0]].get(key[1]) for key in keys]


def subject(envelope: Envelope) -> Subject | None:
    (one,) = subjects([envelope])
    return one
