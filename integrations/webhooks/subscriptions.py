"""A subscriber's writes: create, change, rotate the secret of, and delete a subscription; for
the API and the admin alike, so that both validate and decide the same way. And the locks that
keep a deletion and the batches sending to a subscription out of each other's way."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core import events, outbound, services
from core.models import Tenant
from integrations.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
    matches,
    new_secret,
)

log = logging.getLogger(__name__)


def check_event_types(patterns: list[str]) -> list[str]:
    """Exact names must be public event types; patterns must match at least one."""
    if not patterns:
        raise ValidationError("event_types: name at least one event type, or '*' for all.")
    public = events.public_types()
    for pattern in patterns:
        if not any(matches([pattern], name) for name in public):
            raise ValidationError(
                f"event_types: {pattern!r} matches no event type a webhook can receive. "
                f"Known types: {', '.join(public)}."
            )
    return sorted(set(patterns))


def check_url(url: str) -> str:
    try:
        outbound.check_url(url)
    except outbound.BlockedDestination as exc:
        raise ValidationError(f"url: {exc}") from None
    return url


@transaction.atomic
def create_subscription(
    *, tenant: Tenant, url: str, event_types: list[str], description: str = "", enabled=True
) -> tuple[WebhookSubscription, str]:
    """Create a subscription and return it with its signing secret, shown this once."""
    now = timezone.now()
    subscription = WebhookSubscription.objects.create(
        tenant=tenant,
        url=check_url(url),
        event_types=check_event_types(event_types),
        description=description,
        enabled=enabled,
        secret=new_secret(),
        created=now,
        updated=now,
    )
    return subscription, subscription.secret


@transaction.atomic
def update_subscription(*, subscription: WebhookSubscription, **changes) -> WebhookSubscription:
    """Change url, event_types, description or enabled, and return the subscription as stored.
    It is read again, locked: the decisions (is it being enabled again?) are made on the
    stored row, not on a copy someone changed meanwhile. Only the changed columns are written:
    the worker updates the subscription's health, and a rotation its secrets, meanwhile.
    Raises WebhookSubscription.DoesNotExist once it is deleted."""
    stored = _locked(subscription.pk).defer(*SECRET_FIELDS).get()
    fields = ["updated"]
    if "url" in changes:
        stored.url = check_url(changes["url"])
        fields.append("url")
    if "event_types" in changes:
        stored.event_types = check_event_types(changes["event_types"])
        fields.append("event_types")
    if "description" in changes:
        stored.description = changes["description"]
        fields.append("description")
    if "enabled" in changes:
        set_enabled(stored, changes["enabled"])
        fields += ["enabled", "disabled_reason", "failing_since"]
    stored.updated = timezone.now()
    stored.save(update_fields=fields)
    return stored


def set_enabled(subscription: WebhookSubscription, enabled: bool) -> None:
    if enabled and not subscription.enabled:
        # Re-enabled: a fresh start for the failing-period rule.
        subscription.disabled_reason, subscription.failing_since = "", None
    elif not enabled and subscription.enabled:
        subscription.disabled_reason = "disabled by its owner"
    subscription.enabled = enabled


@transaction.atomic
def rotate_secret(*, subscription: WebhookSubscription) -> tuple[str, datetime]:
    """Issue a new secret; the old one keeps signing beside it for the overlap. Returns the
    new secret and when the old one expires. Raises WebhookSubscription.DoesNotExist once the
    subscription is deleted."""
    now = timezone.now()
    stored = _locked(subscription.pk).get()
    secret = stored.rotate_secret(now=now)
    stored.updated = now
    stored.save(update_fields=["secret", "previous_secret", "previous_secret_expires", "updated"])
    expires = stored.previous_secret_expires
    assert expires is not None  # set by the rotation
    return secret, expires


SECRET_FIELDS = ("secret", "previous_secret")


def _locked(pk: uuid.UUID) -> QuerySet[WebhookSubscription]:
    """The stored subscription, unless deleted, locked for a change of its columns until the
    transaction ends. FOR NO KEY UPDATE: batches sending to it hold it FOR KEY SHARE (see
    hold), which this does not wait for, nor they for it."""
    return WebhookSubscription.objects.select_for_update(no_key=True).filter(
        pk=pk, deleted__isnull=True
    )


# Deleting: the subscription is marked deleted at once, then removed with its deliveries and
# their attempts. A batch of WebhookDeliveryWorker holds the subscriptions it sends to (FOR KEY
# SHARE, hold) from before it writes a row that refers to them until it commits, and takes
# none that is marked deleted; removing locks the row first (FOR UPDATE), so it waits for the
# batches that took it before it was marked, and none can start holding it after. So a batch
# never fails at commit on a delivery whose subscription vanished (PostgreSQL checks that
# foreign key at commit), and a delete never fails on a row a batch wrote meanwhile (Django
# collects what to cascade before it deletes). The mark is what keeps the lock from waiting
# forever behind batches that overlap one another.
PURGE_LOCK_SECONDS = 2.0  # how long a delete waits for such batches before leaving it to prune
PRUNE_PURGE_LOCK_SECONDS = 60.0


def delete_subscription(*, subscription: WebhookSubscription) -> None:
    """Delete a subscription: for the API, the admin and the worker at once; its rows as soon
    as no batch still sends to it (now, or at the next prune if a batch holds it longer than
    PURGE_LOCK_SECONDS). Outside a transaction: the mark must be committed before the removal
    waits, or batches starting meanwhile would still take the subscription."""
    now = timezone.now()
    WebhookSubscription.objects.filter(pk=subscription.pk, deleted__isnull=True).update(
        deleted=now, enabled=False, disabled_reason="deleted by its owner", updated=now
    )
    purge(subscription.pk, lock_seconds=PURGE_LOCK_SECONDS)


def purge(pk: uuid.UUID, *, lock_seconds: float) -> bool:
    """Remove a subscription marked deleted, with its deliveries and their attempts. False if
    batches held it for longer than `lock_seconds` (it stays marked, for the next prune)."""
    try:
        with transaction.atomic():
            _lock_timeout(lock_seconds)
            marked = WebhookSubscription.objects.select_for_update().filter(
                pk=pk, deleted__isnull=False
            )
            if marked.values_list("pk", flat=True).first() is None:
                return True  # removed already
            WebhookAttempt.objects.filter(delivery__subscription_id=pk).delete()
            with connection.cursor() as cursor:
                # In SQL: Django's delete() would load every delivery to cascade to attempts,
                # which are gone already.
                cursor.execute(
                    f"DELETE FROM {WebhookDelivery._meta.db_table} WHERE subscription_id = %s",
                    [WebhookSubscription._meta.pk.get_db_prep_value(pk, connection)],
                )
            WebhookSubscription.objects.filter(pk=pk).only("pk").delete()
    except OperationalError as exc:  # the lock's timeout; on SQLite, the busy timeout
        log.warning("subscription %s stays marked deleted until the next prune: %s", pk, exc)
        return False
    return True


def _lock_timeout(seconds: float) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{seconds * 1000:.0f}"])


def hold(ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Of the subscriptions `ids`, those still there and not marked deleted; on PostgreSQL each
    locked FOR KEY SHARE until the transaction ends: removing it waits for this batch, while
    changes of its other columns (PATCH, health, disabling) do not. In SQL: the ORM knows no
    FOR KEY SHARE (FOR NO KEY UPDATE would make two batches sending to one endpoint wait for
    each other's POSTs). In id order, as every holder takes them. On SQLite a batch holds the
    database's write lock from its start, so nothing is removed under it."""
    if not ids:
        return set()
    ordered = sorted(ids)
    marks = ", ".join(["%s"] * len(ordered))
    lock = " ORDER BY id FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    prepare = WebhookSubscription._meta.pk.get_db_prep_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {WebhookSubscription._meta.db_table} "
            f"WHERE id IN ({marks}) AND deleted IS NULL{lock}",
            [prepare(pk, connection) for pk in ordered],
        )
        return {uuid.UUID(str(row[0])) for row in cursor.fetchall()}


def disable(subscription: WebhookSubscription, *, reason: str, now: datetime) -> None:
    """Disable a subscription and say so with a SubscriptionDisabled event."""
    updated = WebhookSubscription.objects.filter(pk=subscription.pk, enabled=True).update(
        enabled=False, disabled_reason=reason[:500], updated=now
    )
    subscription.enabled, subscription.disabled_reason = False, reason
    if updated:
        services.publish(
            tenant=subscription.tenant,
            type="SubscriptionDisabled",
            data={
                "subscriptionId": str(subscription.pk),
                "url": subscription.url,
                "reason": reason,
            },
            source="webhooks",
            source_id=str(subscription.pk),
        )
