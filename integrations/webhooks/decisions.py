"""The webhooks domain's decisions, as pure functions: plain values in, plain values out, no
database and no clock. Delivering, redelivering and the admin all call these."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from core import outbound
from core.runtime.errors import TransientError

DELIVERY_NAMESPACE = uuid.UUID("1d0b7f4e-8a43-4c55-b1f2-6a3e2f9c0d17")


def delivery_id(subscription_id: uuid.UUID, event_id: uuid.UUID) -> uuid.UUID:
    """A delivery's id, its webhook-id: one per (subscription, event), known in advance."""
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{subscription_id}:{event_id}")


def queued_event_id(delivery_pk: uuid.UUID) -> uuid.UUID:
    """The eventId of a delivery's WebhookDeliveryQueued command (and so of its message)."""
    return uuid.uuid5(DELIVERY_NAMESPACE, f"queued:{delivery_pk}")


def delivered_event_id(delivery_pk: uuid.UUID, attempts: int) -> uuid.UUID:
    return uuid.uuid5(DELIVERY_NAMESPACE, f"delivered:{delivery_pk}:{attempts}")


def is_about(subscription_id: uuid.UUID, data: dict) -> bool:
    """Whether an event's data is the platform's news about this subscription's own failures,
    which is not sent to it: it is the endpoint that fails, and each failure would make one
    more."""
    return data.get("subscriptionId") == str(subscription_id)


Reply = outbound.Reply | Exception  # what outbound.post_all gives for one request


@dataclass(frozen=True)
class Outcome:
    """What one attempt's reply means. `failure` is empty for a delivered one; a transient
    failure is retried (after `retry_after` seconds, the receiver's, or the worker's backoff
    when None); `disable`, when set, is why the subscription is to be disabled."""

    failure: str = ""
    permanent: bool = False
    retry_after: float | None = None
    disable: str = ""

    @property
    def delivered(self) -> bool:
        return not self.failure


DELIVERED = Outcome()


def outcome(
    reply: Reply,
    *,
    failing_since: datetime | None,
    failing_too_long: bool,
    now: datetime,
    retry_cap: float,
) -> Outcome:
    """A 2xx is delivered. A refused destination is a permanent failure; so is 410 Gone, and a
    failure after the subscription has been failing for too long, both of which disable it.
    Anything else is transient (`now` and `retry_cap` for a Retry-After)."""
    if isinstance(reply, outbound.Reply) and 200 <= reply.status < 300:
        return DELIVERED
    if isinstance(reply, outbound.BlockedDestination):
        return Outcome(f"refused to connect: {reply}", permanent=True)
    if isinstance(reply, outbound.Reply) and reply.status == 410:
        reason = "the endpoint answered 410 Gone"
        return Outcome(f"{reason}; the subscription was disabled", permanent=True, disable=reason)
    if failing_since and failing_too_long:
        reason = f"no successful delivery since {failing_since.isoformat()}"
        return Outcome(
            f"{describe(reply)}; {reason}: the subscription was disabled",
            permanent=True,
            disable=reason,
        )
    wait = retry_after(reply, now=now, cap=retry_cap) if isinstance(reply, outbound.Reply) else None
    return Outcome(describe(reply), retry_after=wait)


def describe(reply: Reply) -> str:
    if isinstance(reply, outbound.Reply):
        return f"the endpoint answered {reply.status}"
    return f"{type(reply).__name__}: {reply}"


def retry_after(reply: outbound.Reply, *, now: datetime, cap: float) -> float | None:
    """Retry-After in seconds (RFC 9110: delay-seconds or an HTTP date), for 429 and 503, at
    most `cap`."""
    if reply.status not in (429, 503):
        return None
    value = {k.lower(): v for k, v in reply.headers.items()}.get("retry-after", "").strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = (when - now).total_seconds()
    return max(0.0, min(seconds, cap))


def next_attempt(failure: Exception, now: datetime) -> datetime | None:
    """When a failed delivery is sent next, as its page shows it: known for a transient failure
    (the delivery handler chooses its wait); None otherwise (the runtime decides, and its
    message's due time shows it)."""
    if isinstance(failure, TransientError) and failure.retry_after is not None:
        return now + timedelta(seconds=failure.retry_after)
    return None
