"""Reads of the webhooks domain; every one is scoped to a tenant."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from core.models import Tenant
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookSubscription


def subscriptions(*, tenant: Tenant) -> QuerySet[WebhookSubscription]:
    # One deleted is gone for its owner at once, though its rows may wait for a batch.
    return WebhookSubscription.objects.filter(tenant=tenant, deleted__isnull=True)


def subscription(*, tenant: Tenant, subscription_id: str) -> WebhookSubscription | None:
    pk = _uuid(subscription_id)
    return subscriptions(tenant=tenant).filter(pk=pk).first() if pk else None


def deliveries(*, subscription: WebhookSubscription, state: str = "") -> QuerySet[WebhookDelivery]:
    found = WebhookDelivery.objects.filter(
        tenant_id=subscription.tenant_id, subscription=subscription
    ).prefetch_related(Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number")))
    return found.filter(state=state) if state else found


def delivery(*, tenant: Tenant, delivery_id: str) -> WebhookDelivery | None:
    pk = _uuid(delivery_id.removeprefix("msg_"))
    if pk is None:
        return None
    return WebhookDelivery.objects.filter(
        tenant_id=tenant.pk, pk=pk, subscription__deleted__isnull=True
    ).first()


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
