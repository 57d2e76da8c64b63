"""Operators' actions on an incident: acknowledge, resolve, comment. The API and the console
both call these; each goes through decisions (the same rules as the worker's), puts the change
on the incident's timeline with who did it and when, and publishes IncidentResolved when it
resolves one. Acknowledging an acknowledged incident, or resolving a resolved one, changes
nothing."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from core.models import ApiKey
from observability.incidents import decisions, store
from observability.incidents.decisions import Refused
from observability.incidents.models import Incident, IncidentTimelineEntry

__all__ = ["Refused", "acknowledge", "actor_of_key", "actor_of_user", "comment", "resolve"]

COMMENT_CHARS = 10_000


def actor_of_key(key: ApiKey) -> str:
    """Who acted, on the timeline, for a request made with an API key."""
    name = f" ({key.name})" if key.name else ""
    return f"API key {ApiKey.PREFIX}{key.lookup}{name}"


def actor_of_user(username: str) -> str:
    """Who acted, on the timeline, for a console user."""
    return f"console user {username}"


Action = Callable[[decisions.Incident], decisions.Outcome]


def _act(incident: Incident, action: Action) -> decisions.Outcome:
    """Run an action on the incident as stored now (locked), write and publish its outcome."""
    with transaction.atomic():
        rows = Incident.objects.filter(tenant_id=incident.tenant_id, pk=incident.pk)
        found = store.load_incidents(rows, tenant_id=incident.tenant_id)
        if not found:
            raise Incident.DoesNotExist(f"incident {incident.pk} is gone")
        outcome = action(found[0])
        store.save(incident.tenant_id, found, outcome, now=timezone.now())
        store.publish(incident.tenant_id, outcome.transitions)
    incident.refresh_from_db()
    return outcome


def acknowledge(*, incident: Incident, actor: str) -> bool:
    """Acknowledge an open incident; False if it was acknowledged already. Refused for a
    resolved or closed one."""
    outcome = _act(incident, lambda i: decisions.acknowledge(i, actor=actor, at=timezone.now()))
    return bool(outcome.entries)


def resolve(*, incident: Incident, actor: str) -> bool:
    """Resolve an open or acknowledged incident and its active triggers, and publish
    IncidentResolved; False if it was resolved (or closed) already."""
    outcome = _act(incident, lambda i: decisions.resolve(i, actor=actor, at=timezone.now()))
    return bool(outcome.transitions)


def comment(*, incident: Incident, actor: str, text: str) -> IncidentTimelineEntry:
    """Add a comment to the incident's timeline (any status: a closed incident takes its
    postmortem notes)."""
    if len(text) > COMMENT_CHARS:
        raise Refused(f"A comment is at most {COMMENT_CHARS} characters; this one has {len(text)}.")
    outcome = _act(
        incident, lambda i: decisions.comment(i, actor=actor, at=timezone.now(), text=text)
    )
    (entry,) = outcome.entries
    return IncidentTimelineEntry.objects.filter(
        incident=incident, kind=entry.kind, at=entry.at, actor=entry.actor
    ).latest("id")
