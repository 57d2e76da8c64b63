"""IntegrationFailed's data contract, and the resume commands IntegrationRetryWorker sends.

Every producer publishes IntegrationFailed (through core.services, in the transaction that
records the failure) with this data; `failed_data` builds it:

    failureId     str, required. Names one failure across all its retries (at most 200
                  characters). Mint it when the failure first happens (a uuid4, or a stable
                  id such as a dead delivery's id) and carry it through the retries.
    kind          "sync" | "rotation" | "outage" | "webhook", required.
    attempt       int, optional (0). The execution this report is about. The first report of a
                  failure sends 0 (or, for a webhook, the delivery's attempt count); a retry
                  that IntegrationRetryWorker started carries `failureId` and `attempt` in its
                  command's data, and its failure is reported with both echoed back. The
                  worker dedups on (failureId, attempt): the same report twice is one.
    error         str, required: what went wrong, for a person. Never a secret.
    errorClass    "transient" | "rate_limited" | "auth" | "permanent", optional: classified
                  from `status` and `error` when absent (decisions.classify).
    status        int, optional: the vendor's HTTP status, when there was one.
    retryAfter    number, optional: seconds the vendor asked to wait (Retry-After); a longer
                  wait than the policy's wins.
    provider      str, optional: the provider's name ("github"), which picks the RetryPolicy.
    subject       str, optional: the subject in words ("acme/widgets issues").
    connectionId  str: sync and outage (required), rotation (optional).
    credentialId  str: rotation (required).
    rotationToken str: rotation (required): the resumed rotation reuses it, so that it resumes
                  its step instead of starting over.
    subscriptionId, deliveryId  str: webhook (required).

A failure resolves when its subject works again: a producer whose run succeeds calls
integrations.failures.services.resolve_subject(tenant_id=, kind=, subject_id=) in its own
transaction (the sync worker after a completed run, the rotation worker after a promotion, the
health worker when a connection is up again); a webhook failure resolves when its delivery is
delivered (the sweep sees it).

The resume commands (decisions: a due retry; services: an operator's retry) carry
`failureId` and `attempt` (the execution they start) beside their own fields:
    sync      IntegrationSyncRequested    {connectionId, resume: true, failureId, attempt}
    rotation  CredentialRotationRequested {credentialId, rotationToken, failureId, attempt}
    outage    ConnectionProbeRequested    {connectionId, failureId, attempt}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from integrations.failures import decisions

FAILURE_ID_CHARS = 200
ERROR_CHARS = 4000

# The field naming each kind's subject, and the ones a resume needs.
SUBJECT_FIELD = {
    "sync": "connectionId",
    "rotation": "credentialId",
    "outage": "connectionId",
    "webhook": "subscriptionId",
}
REQUIRED = {
    "sync": ("connectionId",),
    "rotation": ("credentialId", "rotationToken"),
    "outage": ("connectionId",),
    "webhook": ("subscriptionId", "deliveryId"),
}
# Kept on the failure, for its resume and its page.
KEPT = ("connectionId", "credentialId", "rotationToken", "subscriptionId", "deliveryId", "url")
COMMANDS = {
    "sync": "IntegrationSyncRequested",
    "rotation": "CredentialRotationRequested",
    "outage": "ConnectionProbeRequested",
}


@dataclass(frozen=True)
class Report:
    """One IntegrationFailed, read."""

    failure_id: str
    kind: str
    attempt: int
    error: str
    error_class: str
    status: int | None
    retry_after: float | None
    provider: str
    subject_id: str
    subject: str
    detail: dict[str, str]


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value).strip() if isinstance(value, str | int) else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


def parse(data: Mapping[str, Any]) -> Report:
    """The report in an IntegrationFailed's data; ValueError saying what is wrong otherwise."""
    failure_id = _text(data.get("failureId"))
    if not failure_id or len(failure_id) > FAILURE_ID_CHARS:
        raise ValueError(f"IntegrationFailed needs a failureId of 1 to {FAILURE_ID_CHARS} chars")
    kind = _text(data.get("kind"))
    if kind not in decisions.KINDS:
        raise ValueError(f"IntegrationFailed kind {kind!r} is not one of {decisions.KINDS}")
    missing = [name for name in REQUIRED[kind] if not _text(data.get(name))]
    if missing:
        raise ValueError(f"IntegrationFailed of kind {kind} needs {', '.join(missing)}")
    attempt = data.get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError("IntegrationFailed attempt must be a whole number, 0 or more")
    status = data.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) else None
    error = _text(data.get("error")) or _text(data.get("reason")) or "no error given"
    return Report(
        failure_id=failure_id,
        kind=kind,
        attempt=attempt,
        error=error[:ERROR_CHARS],
        error_class=decisions.classify(
            hint=_text(data.get("errorClass")), status=status, error=error
        ),
        status=status,
        retry_after=_number(data.get("retryAfter")),
        provider=_text(data.get("provider"))[:100],
        subject_id=_text(data.get(SUBJECT_FIELD[kind]))[:200],
        subject=_text(data.get("subject"))[:300],
        detail={name: _text(data[name])[:2000] for name in KEPT if _text(data.get(name))},
    )


def failed_data(
    *,
    failure_id: str,
    kind: str,
    error: str,
    attempt: int = 0,
    error_class: str = "",
    status: int | None = None,
    retry_after: float | None = None,
    provider: str = "",
    subject: str = "",
    **ids: str,
) -> dict[str, Any]:
    """IntegrationFailed's data, for a producer: `ids` are connectionId, credentialId,
    rotationToken, subscriptionId, deliveryId as the kind needs them."""
    data: dict[str, Any] = {"failureId": failure_id, "kind": kind, "attempt": attempt}
    data["error"] = error
    optional = {
        "errorClass": error_class,
        "status": status,
        "retryAfter": retry_after,
        "provider": provider,
        "subject": subject,
    }
    data.update({k: v for k, v in optional.items() if v not in ("", None)})
    data.update(ids)
    parse(data)  # a producer finds out at once, not the worker later
    return data


def command(
    kind: str, *, failure_id: str, attempt: int, detail: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    """The resume command of a retry: (type, data)."""
    base = {"failureId": failure_id, "attempt": attempt}
    if kind == "sync":
        return COMMANDS[kind], {"connectionId": detail["connectionId"], "resume": True, **base}
    if kind == "rotation":
        return COMMANDS[kind], {
            "credentialId": detail["credentialId"],
            "rotationToken": detail["rotationToken"],
            **base,
        }
    if kind == "outage":
        return COMMANDS[kind], {"connectionId": detail["connectionId"], **base}
    raise ValueError(f"a {kind} failure is not retried by a command")
