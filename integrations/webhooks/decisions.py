"""The webhooks domain's decisions, as pure functions: plain values in, plain values out, no
database and no clock. Delivering, redelivering and the admin all call these.

A receiver that answers 429, or 503 with a Retry-After longer than the next backoff, is asking
us to wait, not failing: the attempt is recorded (the delivery's history shows every POST) but
spends nothing of the retry ladder, neither the delivery's nor its message's (it is NotYet, due
again when the wait ends: the Retry-After, or the host's bucket if that is blocked longer).
A bare 429 waits as long as the delivery has waited so far, at least the next backoff: each one
doubles the total, as a backoff would. The waits of a round add up to at most
WEBHOOK_MAX_WAIT_SECONDS (by default the span of the retry schedule, about as long as eight
failures would keep it): a receiver that answers 429 forever does not keep a delivery forever;
past it the delivery dies as after its last failure, and the reason says it waited too long.
How others do it: GitHub does not retry a failed delivery at all; Stripe retries any non-2xx,
429 included, with backoff for up to three days, bounded by time, not by attempts; Svix spends
one of its eight scheduled attempts on a 429 and instead paces each endpoint to a throttle
rate that the sender sets; Convoy likewise spends a retry and paces by a configured
per-endpoint rate limit. Spending attempts on 429s dead-letters healthy work behind a
receiver's burst limit (eight 429s in a minute of backpressure and the event is gone), so we
follow Zapier and GitLab instead (a 429's Retry-After reschedules, shown as waiting, not
failed) and bound the total by time as Stripe does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from core import outbound
from core.runtime.errors import NotYet, TransientError
from core.runtime.registry import RetryPolicy

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
    when None); `wait`: the receiver asked to wait (`retry_after`, or None when it did not say
    how long), which spends no attempt; `disable`, when set, is why the subscription is to be
    disabled."""

    failure: str = ""
    permanent: bool = False
    retry_after: float | None = None
    disable: str = ""
    wait: bool = False

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
    next_backoff: float,
) -> Outcome:
    """A 2xx is delivered. A refused destination is a permanent failure; so is 410 Gone, and a
    failure after the subscription has been failing for too long, both of which disable it.
    A 429, and a 503 whose Retry-After is longer than `next_backoff` (the longest the worker's
    policy would wait before the next attempt), are waits: the receiver is there and asks for
    time, which neither spends an attempt nor counts toward failing too long. Anything else is
    transient (`now` and `retry_cap` for a Retry-After)."""
    if isinstance(reply, outbound.Reply) and 200 <= reply.status < 300:
        return DELIVERED
    if isinstance(reply, outbound.BlockedDestination):
        return Outcome(f"refused to connect: {reply}", permanent=True)
    if isinstance(reply, outbound.Reply) and reply.status == 410:
        reason = "the endpoint answered 410 Gone"
        return Outcome(f"{reason}; the subscription was disabled", permanent=True, disable=reason)
    if isinstance(reply, outbound.Reply) and reply.status in (429, 503):
        said = retry_after(reply, now=now, cap=retry_cap)
        if reply.status == 429 or (said is not None and said > next_backoff):
            return Outcome(describe(reply), retry_after=said, wait=True)
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


def wait_seconds(*, said: float | None, waited: float, floor: float, cap: float) -> float:
    """How long a wait lasts: what the receiver said (Retry-After); when it did not say (a
    bare 429), as long as the delivery has waited so far, at least `floor` (the next backoff)
    and at most `cap`: each bare 429 doubles the total, as a backoff would."""
    if said is not None:
        return max(said, MIN_WAIT_SECONDS)
    return min(cap, max(floor, waited))


# A Retry-After of 0 still waits this long: every wait brings the round nearer its limit.
MIN_WAIT_SECONDS = 1.0


def waited_too_long(*, waited: float, wait: float, limit: float) -> bool:
    """Whether a wait would take the round's waiting past `limit` seconds in all."""
    return waited + wait > limit


def retry_span(policy: RetryPolicy) -> float:
    """The longest the retry schedule can take, in seconds: every backoff at its ceiling."""
    return sum(policy.ceiling(n) for n in range(1, policy.max_attempts))


def next_attempt(failure: Exception, now: datetime) -> datetime | None:
    """When a failed delivery is sent next, as its page shows it: known for a transient failure
    (the delivery handler chooses its wait) and for one held back (NotYet: its host's circuit
    or rate limit); None otherwise (the runtime decides, and its message's due time shows it)."""
    if isinstance(failure, TransientError) and failure.retry_after is not None:
        return now + timedelta(seconds=failure.retry_after)
    if isinstance(failure, NotYet):
        return failure.until
    return None


# --- The endpoint host's circuit and rate ------------------------------------------------------


OK, FAILED, SLOW = "ok", "failed", "slow"


def availability(reply: Reply, *, slow_after: float) -> str | None:
    """What one attempt says about its endpoint's host, for the host's circuit: any answer but
    a 5xx is the host up (a 4xx is the receiver refusing, not down), slow past `slow_after`
    seconds; a 5xx, a refused connection or a timeout is it failing. A 429 is its rate, the
    bucket's business, and a destination refused by our own guard says nothing about it: None,
    not counted."""
    if isinstance(reply, outbound.Reply):
        if reply.status == 429:
            return None
        if reply.status >= 500:
            return FAILED
        return SLOW if reply.seconds >= slow_after else OK
    if isinstance(reply, outbound.BlockedDestination):
        return None
    return FAILED
