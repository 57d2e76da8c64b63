"""IntegrationSyncWorker's handler (integrations/workers/integration_sync.py declares the
worker): pull a connection's streams page by page into SyncRecords.

A run is a chain of IntegrationSyncRequested commands, each for up to SYNC_PAGES_PER_MESSAGE
(100) pages, fewer once their replies add up to SYNC_MESSAGE_BYTES (8 MiB) or fetching has
taken SYNC_FETCH_SECONDS. A message builds each next request from the stream's checkpoint
(the provider makes the checkpoint say everything the next request needs) and fetches its
pages holding no lock; then it locks the connection's SyncLock and, if the run is still where
the fetch began (else another delivery wrote these pages, and they are dropped), writes the
pages in the message's transaction, with its done mark: the records (new ones by COPY,
stored ones upserted), their factory events (published in bulk, with ids derived from the
change's number, so the same change is the same event), the stream's checkpoint, the run's
counts, and the command for the next pages. A crash anywhere before that commit re-reads
from the last committed checkpoint; nothing is lost or published twice. A page that must wait
or be retried ends the message after the pages before it are written.

- One run at a time per connection: the SyncLock names it; a schedule tick or a second
  "sync now" finds it running and is coalesced (the API answers 409 with the running run).
- Waiting: a rate bucket without a token, a vendor's 429/secondary limit (Retry-After, reset),
  or an open circuit make the message NotYet: due again then, no attempt spent. A wait beyond
  SYNC_MAX_WAIT_SECONDS pauses the run instead (status paused, lock released; the next
  trigger resumes from the checkpoint).
- 401: one token refresh (OAuth 2.0 refresh or client credentials, stored as the credential's
  current secret) and the page again; a second 401, or a secret that cannot refresh, puts the
  connection in error (auth) until a human fixes it.
- 5xx and network errors: VendorError, reported with the writes kept (Retry-After honoured;
  the circuit counts the failure); after the worker's attempts the run fails (on_dead), with
  IntegrationFailed for IntegrationRetryWorker. A 4xx other than 401/429 fails the run.
- Deletions: the provider's flag, or mark-and-sweep after a complete full run (a stream read
  from an empty checkpoint), under SYNC_MAX_DELETE_RATIO.
- IntegrationRunCompleted when a run ends (any status), with its counts and checkpoints.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

import msgspec
from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from core import bulk, lookups, outbound, services, telemetry
from core.envelope import Envelope, sequence_uuid
from core.models import Tenant
from core.runtime.errors import NotYet, PermanentError, TransientError, describe
from integrations.connections import credentials, providers, vendor
from integrations.connections.models import (
    IntegrationConnection,
    IntegrationCredential,
)
from integrations.connections.providers import HASH_ALGORITHM, OutboundRequest, Page, Provider
from integrations.limits import buckets, circuits
from integrations.limits import decisions as limit_decisions
from integrations.limits import keys as limit_keys
from integrations.limits.store import committing
from integrations.sync import decisions
from integrations.sync.models import IntegrationRun, SyncLock, SyncRecord, SyncStream

log = logging.getLogger(__name__)
WORKER = "IntegrationSyncWorker"
COMMAND = "IntegrationSyncRequested"
EVENTS = uuid.UUID("6f1c2b0e-93d4-4a8e-b7c5-2d8e1f0a4c36")
Status = IntegrationRun.Status
Action = SyncRecord.Action


def setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


class Busy(Exception):
    """The connection has a run in progress (the API answers 409)."""

    def __init__(self, run: IntegrationRun) -> None:
        super().__init__(f"Run {run.pk} of this connection is still running.")
        self.run = run


class NotSyncable(Exception):
    """The connection cannot run now (paused, in error, unknown provider)."""


# --- Starting runs -------------------------------------------------------------------------


@transaction.atomic
def start_run(
    *,
    connection: IntegrationConnection,
    trigger: str,
    full: bool = False,
    failure_id: str = "",
    attempt: int = 0,
    now: datetime | None = None,
) -> IntegrationRun:
    """Start a run (its first page's command goes out with the commit). Raises Busy when one
    is running, NotSyncable when the connection is not active. `full` reads every stream from
    an empty checkpoint (and may then sweep deletions)."""
    now = now or timezone.now()
    if connection.status != IntegrationConnection.Status.ACTIVE:
        raise NotSyncable(f"The connection is {connection.status}: {connection.status_reason}")
    provider = _provider(connection)
    # A run in progress holds its lock row through each message's vendor calls: see it
    # without waiting for that row (the API answers at once).
    running = IntegrationRun.objects.filter(
        connection=connection,
        status=Status.RUNNING,
        pk__in=SyncLock.objects.filter(connection=connection).values("run_id"),
    ).first()
    if running is not None:
        raise Busy(running)
    lock = _lock(connection)
    if lock.run_id is not None:
        running = IntegrationRun.objects.filter(pk=lock.run_id, status=Status.RUNNING).first()
        if running is not None:
            raise Busy(running)
    names = _stream_names(connection, provider)
    streams = {s.name: s for s in _streams(connection, names)}
    if full:
        for stream in streams.values():
            stream.checkpoint = {}
    run = IntegrationRun.objects.create(
        tenant_id=connection.tenant_id,
        connection=connection,
        trigger=trigger,
        streams=names,
        stream=names[0] if names else "",
        full=[n for n in names if not streams[n].checkpoint],
        checkpoints_from={n: streams[n].checkpoint for n in names},
        checkpoints_to={n: streams[n].checkpoint for n in names},
        failure_id=failure_id,
        attempt=attempt,
        started=now,
    )
    for stream in streams.values():
        stream.state, stream.updated = SyncStream.State.RUNNING, now
        stream.save(update_fields=["checkpoint", "state", "updated"])
    lock.run = run
    lock.save(update_fields=["run"])
    _send_next(run, tenant_id=connection.tenant_id)
    return run


@transaction.atomic
def reset_stream(*, connection: IntegrationConnection, name: str) -> SyncStream:
    """Forget a stream's checkpoint: its next run is a full read. Busy while a run is in
    progress (it would write the checkpoint back); NotSyncable for a stream the connection's
    provider does not have."""
    provider = _provider(connection)
    if name not in {s.name for s in provider.streams}:
        raise NotSyncable(f"{connection.provider} has no stream {name!r}.")
    lock = _lock(connection)
    if lock.run_id is not None:
        running = IntegrationRun.objects.filter(pk=lock.run_id, status=Status.RUNNING).first()
        if running is not None:
            raise Busy(running)
    [stream] = _streams(connection, [name])
    stream.checkpoint, stream.state, stream.updated = {}, SyncStream.State.IDLE, timezone.now()
    stream.save(update_fields=["checkpoint", "state", "updated"])
    return stream


def _lock(connection: IntegrationConnection) -> SyncLock:
    SyncLock.objects.get_or_create(
        connection=connection, defaults={"tenant_id": connection.tenant_id}
    )
    return SyncLock.objects.select_for_update().get(connection=connection)


def _provider(connection: IntegrationConnection) -> Provider:
    try:
        return providers.get(connection.provider)
    except KeyError as exc:
        raise NotSyncable(str(exc)) from None


def _stream_names(connection: IntegrationConnection, provider: Provider) -> list[str]:
    known = [s.name for s in provider.streams]
    chosen = [n for n in (connection.streams or known) if n in known]
    return chosen or known


def _streams(connection: IntegrationConnection, names: list[str]) -> list[SyncStream]:
    found = {
        s.name: s
        for s in SyncStream.objects.filter(
            connection=connection, name__in=names
        ).select_for_update()
    }
    for name in names:
        if name not in found:
            found[name] = SyncStream.objects.create(
                tenant_id=connection.tenant_id, connection=connection, name=name
            )
    return [found[n] for n in names]


def _send_next(run: IntegrationRun, *, tenant_id: Any) -> None:
    envelope = services.build_envelope(
        tenant_id=tenant_id,
        type=COMMAND,
        data={"connectionId": str(run.connection_id), "runId": str(run.pk)},
        source="integrations.sync",
        source_id=str(run.pk),
        # One id per page: the command for a page is published once, whatever re-runs it.
        event_id=uuid.uuid5(EVENTS, f"page|{run.pk}|{run.stream}|{run.pages}|{run.requests}"),
    )
    services.publish_envelopes([envelope], to_worker=WORKER)


# --- The handler ---------------------------------------------------------------------------


def handle(envelopes: list[Envelope]) -> dict[uuid.UUID, Exception]:
    """A batch of one (the worker's batch_size). A wait (NotYet) or a vendor's failure
    (VendorError: a 5xx, a network error) is reported, not raised: what the page wrote before
    it (the request counted, the circuit's and the bucket's outcomes) is kept, and no page's
    records had been written yet. Anything else raises and rolls back."""
    failures: dict[uuid.UUID, Exception] = {}
    for envelope in envelopes:
        if envelope.type == "ScheduleFired":
            # At the slot's time, not the clock's: a late tick decides as the slot would have.
            tick(tenant_id=envelope.tenant_id, now=envelope.occurred_at)
            continue
        try:
            with committing():  # one limits connection for all of the message's calls
                command(envelope)
        except (NotYet, VendorError) as exc:
            failures[envelope.event_id] = exc
    return failures


class VendorError(TransientError):
    """The vendor failed a page (5xx, a network error): retried by the worker's policy."""


def command(envelope: Envelope) -> None:
    data = envelope.data
    if data.get("runId"):
        step(run_id=data["runId"], tenant_id=envelope.tenant_id)
        return
    # "Sync now" from elsewhere (the admin, IntegrationRetryWorker's resume): start a run, or
    # let the running one be (coalesced).
    try:
        connection_id = uuid.UUID(str(data.get("connectionId")))
    except ValueError:
        raise PermanentError(f"connectionId {data.get('connectionId')!r} is not a UUID") from None
    connection = IntegrationConnection.objects.filter(
        tenant_id=envelope.tenant_id, pk=connection_id
    ).first()
    if connection is None:
        return
    trigger = (
        IntegrationRun.Trigger.RETRY if data.get("failureId") else IntegrationRun.Trigger.MANUAL
    )
    try:
        start_run(
            connection=connection,
            trigger=trigger,
            full=bool(data.get("full")),
            failure_id=str(data.get("failureId") or ""),
            attempt=int(data.get("attempt") or 0),
        )
    except (Busy, NotSyncable) as exc:
        log.info("sync of %s not started: %s", connection.pk, exc)


def tick(*, tenant_id: Any, now: datetime) -> int:
    """The schedule's minute: start a run for every active connection of the tenant whose
    cadence has passed since its last run began. Returns how many started."""
    started = 0
    connections = IntegrationConnection.objects.filter(
        tenant_id=tenant_id, status=IntegrationConnection.Status.ACTIVE
    )
    last = dict(
        SyncLock.objects.filter(tenant_id=tenant_id).values_list("connection_id", "last_run_at")
    )
    for connection in connections:
        began = last.get(connection.pk)
        if began is not None and began + timedelta(seconds=connection.cadence_seconds) > now:
            continue
        try:
            start_run(connection=connection, trigger=IntegrationRun.Trigger.SCHEDULE, now=now)
            started += 1
        except (Busy, NotSyncable):
            continue
    return started


def step(*, run_id: Any, tenant_id: Any, now: datetime | None = None) -> None:
    """Up to SYNC_PAGES_PER_MESSAGE pages of the run's current stream (fewer past
    SYNC_MESSAGE_BYTES of replies or SYNC_FETCH_SECONDS of fetching), committed with the
    message: their records in one upsert, their events in one publish, the checkpoint of the
    last. The pages are fetched first, holding no lock, each made ready to write (a Draft)
    while the vendor serves the next; the connection's lock and the stream's row are taken
    only to write them, so a slow vendor never keeps a lock (nor a write) open. A crash
    re-reads only what was not committed; a page that fails or must wait ends the message
    after the pages before it are written."""
    now = now or timezone.now()
    run = IntegrationRun.objects.filter(pk=run_id, tenant_id=tenant_id).first()
    if run is None or run.status != Status.RUNNING:
        return  # finished, failed or paused meanwhile: a stale command
    connection = IntegrationConnection.objects.get(pk=run.connection_id, tenant_id=tenant_id)
    change = (
        SyncLock.objects.filter(connection=connection, run=run)
        .values_list("change", flat=True)
        .first()
    )
    if change is None:
        return  # the lock names another run, or none
    if connection.status != IntegrationConnection.Status.ACTIVE:
        if (lock := _locked(run, connection)) is not None:
            _finish(
                run, lock, status=Status.PAUSED, error=f"connection {connection.status}", now=now
            )
        return
    provider = _provider(connection)
    try:
        secret = credentials.current_secret(connection=connection)
    except credentials.NoCredential as exc:
        if (lock := _locked(run, connection)) is not None:
            _auth_error(run, lock, connection, str(exc), now=now)
        return
    keys = _limit_keys(connection, provider)
    _circuit_permit(keys, now=now)
    name = run.stream
    start = (
        SyncStream.objects.filter(connection=connection, name=name)
        .values_list("checkpoint", flat=True)
        .first()
    ) or {}
    most = max(1, int(setting("SYNC_PAGES_PER_MESSAGE", 100)))
    reader = Reader(run, connection, provider, keys, secret, name, most, Tokens(keys, provider))
    draft = Draft(run=run, provider=provider, stream=name, change=change, now=timezone.now())
    _fetch(reader, start, draft.add)
    # The writes: only if no other delivery of this command wrote these pages meanwhile (the
    # run, its stream and the connection's change counter are where the fetch began), else
    # what was fetched is dropped.
    read = (run.stream, run.pages, run.requests)
    lock = _locked(run, connection)
    if lock is None:
        return
    stream = SyncStream.objects.select_for_update().get(connection=connection, name=name)
    if (run.stream, run.pages, run.requests) != read or (stream.checkpoint, lock.change) != (
        start,
        change,
    ):
        log.info("run %s moved on while its pages were fetched: they are dropped", run.pk)
        return
    run.requests += reader.requests
    last, stop = reader.last, reader.stop
    if last is not None:
        circuits.record(key=keys.circuit, ok=True, count=reader.read, tenant_id=keys.tenant_id)
        draft.write(run=run, lock=lock, stream=stream, now=timezone.now())
    if isinstance(stop, RunEnds):
        if stop.auth:
            _auth_error(run, lock, connection, stop.why, now=timezone.now())
        else:
            _finish(
                run,
                lock,
                status=Status.FAILED,
                error=stop.why,
                now=timezone.now(),
                status_code=stop.status,
            )
        return
    if isinstance(stop, NotYet):
        _wait(run, lock, stop.until, now=timezone.now(), why=stop.reason or "waiting")
        return
    if stop is not None:
        run.save()
        raise stop
    assert last is not None  # a fetch ends with a page read, or what stopped it
    if not last.complete:
        run.save()
        _send_next(run, tenant_id=tenant_id)
        return
    _stream_done(run, lock, stream, provider, now=timezone.now())


def _locked(run: IntegrationRun, connection: IntegrationConnection) -> SyncLock | None:
    """The connection's lock, held, if it still names `run` and the run (read again) is still
    running; else None (the command is stale)."""
    lock = _lock(connection)
    if lock.run_id != run.pk:
        return None
    run.refresh_from_db()
    return lock if run.status == Status.RUNNING else None


AHEAD = 16  # the most requests a message takes from its bucket at once


@dataclass
class Tokens:
    """Requests taken from the connection's rate bucket ahead of the pages that make them: one
    for the first page, then 2, 4, 8 and 16 at a time (AHEAD), never more than the message may
    still fetch, so that a message of 100 pages takes from the bucket 10 times, not 100 (each
    take a committed UPDATE, 0.7-1.5 ms measured between pages), and a one-page incremental
    read once; it holds at most 16 that another process sharing the bucket might have used.
    What a message does not use is given back when it ends (if the bucket is as it left it);
    a vendor's reply that tightens the bucket forfeits the rest, so the next page asks the
    bucket, which then says to wait."""

    keys: Limits
    provider: Provider
    left: int = 0
    ask: int = 1
    tat: int | None = None

    def take(self, *, most: int, now: datetime) -> None:
        """One request, or NotYet; `most`: the pages the message may still fetch."""
        if self.left:
            self.left -= 1
            return
        policy = self.provider.rate_limit
        taken = buckets.reserve(
            key=self.keys.bucket,
            rate=policy.rate,
            burst=policy.burst,
            want=max(1, min(self.ask, most)),
            now=now,
            tenant_id=self.keys.tenant_id,
        )
        if not taken.count:
            assert taken.retry is not None
            raise NotYet(taken.retry, f"rate bucket {self.keys.bucket}")
        self.left, self.tat, self.ask = taken.count - 1, taken.tat, min(self.ask * 2, AHEAD)

    def forfeit(self) -> None:
        self.left, self.ask = 0, 1

    def give_back(self) -> None:
        if self.left and self.tat is not None:
            rate = self.provider.rate_limit.rate
            buckets.give_back(key=self.keys.bucket, rate=rate, count=self.left, tat=self.tat)
        self.left = 0


@dataclass
class Reader:
    """One message's reading of a stream: what its requests need, how many pages it read and
    the last of them (the others are given to the Draft as they come, not kept: what a message
    holds is the rows it will write), what stopped it before `most` pages (a wait, a vendor's
    failure, a refusal), and how many requests it sent."""

    run: IntegrationRun
    connection: IntegrationConnection
    provider: Provider
    keys: Limits
    secret: dict[str, Any]
    stream: str
    most: int
    tokens: Tokens
    read: int = 0
    last: Page | None = None
    stop: Exception | None = None
    requests: int = 0
    read_bytes: int = 0  # the bodies of the replies its pages were read from

    @property
    def config(self) -> dict[str, Any]:
        return self.connection.config or {}


def _fetch(reader: Reader, checkpoint: dict[str, Any], on_page: Callable[[Page], None]) -> None:
    """The pages from `checkpoint` on, each requested from the last one's checkpoint, until
    the stream's end, `reader.most` pages, SYNC_MESSAGE_BYTES of replies read (what the
    message holds until it writes: its memory), SYNC_FETCH_SECONDS spent (with the request
    timeout, this bounds a message well inside its lease), or a page that stops it; the
    bounds are checked between pages, so a message reads at least one. Each page's request
    goes out before `on_page` takes the page before it, so the vendor serves one while this
    process reads the other; never more than one request ahead, and only one the sequential
    reading would make too."""
    budget = monotonic() + float(setting("SYNC_FETCH_SECONDS", 10.0))
    most_bytes = int(setting("SYNC_MESSAGE_BYTES", 8 << 20))
    ahead: Future[outbound.Reply] | None = None
    try:
        try:
            request = _next_request(reader, checkpoint)
            ahead = _send_soon(reader, request)
        except (NotYet, VendorError) as exc:
            reader.stop = exc
            return
        while ahead is not None:
            try:
                reply = _received(reader, ahead, request)
                ahead = None
                page = _read(reader, checkpoint, request, reply)
            except (NotYet, VendorError, RunEnds) as exc:
                reader.stop = exc
                return
            reader.read, reader.last = reader.read + 1, page
            checkpoint = page.checkpoint
            if (
                not page.complete
                and reader.read < reader.most
                and reader.read_bytes < most_bytes
                and monotonic() < budget
            ):
                try:
                    request = _next_request(reader, checkpoint)
                    ahead = _send_soon(reader, request)
                except (NotYet, VendorError) as exc:
                    reader.stop = exc
            on_page(page)
    finally:
        if ahead is not None:  # a failure of on_page: the reply is not wanted, its end is
            with contextlib.suppress(Exception):
                ahead.result()
        reader.tokens.give_back()


def _next_request(reader: Reader, checkpoint: dict[str, Any]) -> OutboundRequest:
    """The request for the page after `checkpoint`, with its token taken, or NotYet."""
    reader.tokens.take(most=reader.most - reader.read, now=timezone.now())
    return reader.provider.first_request(
        reader.stream,
        base_url=reader.connection.base_url,
        checkpoint=checkpoint,
        config=reader.config,
    )


def _stream_done(
    run: IntegrationRun, lock: SyncLock, stream: SyncStream, provider: Provider, *, now: datetime
) -> None:
    """The stream was read to its end: sweep it if the read was full, then the next stream
    (its command), or the run's end."""
    if stream.name in run.full:
        sweep(run=run, lock=lock, stream=stream, provider=provider, now=now)
    stream.state = SyncStream.State.IDLE
    stream.last_synced = now
    stream.save(update_fields=["state", "last_synced"])
    names = list(run.streams)
    position = names.index(stream.name)
    if position + 1 < len(names):
        run.stream = names[position + 1]
        run.save()
        _send_next(run, tenant_id=run.tenant_id)
        return
    _finish(run, lock, status=Status.SUCCEEDED, now=now)


class RunEnds(Exception):
    """The vendor refused the run for good: a 4xx (fatal), or authentication (auth)."""

    def __init__(self, why: str, *, status: int, auth: bool = False) -> None:
        super().__init__(why)
        self.why, self.status, self.auth = why, status, auth


def _read(
    reader: Reader,
    checkpoint: dict[str, Any],
    request: OutboundRequest,
    reply: outbound.Reply,
) -> Page:
    """Read the reply to the page from `checkpoint`. Raises RunEnds (a refusal, an auth
    error), NotYet (wait) or VendorError (retry later)."""
    now = timezone.now()
    provider, keys = reader.provider, reader.keys
    outcome = provider.classify(reply.status, reply.headers, reply.body)
    if outcome == "auth":
        fresh = _refreshed(reader.connection, reader.secret)
        if fresh is None:
            raise RunEnds(f"the vendor answered {reply.status}", status=reply.status, auth=True)
        reader.secret.clear()
        reader.secret.update(fresh)
        reply = _received(reader, _send_soon(reader, request), request)
        outcome = provider.classify(reply.status, reply.headers, reply.body)
        if outcome == "auth":
            raise RunEnds("refreshed, and refused again", status=reply.status, auth=True)
    _observe(keys, provider, reply, reader.tokens, now=now)
    if outcome == "rate_limited":
        until = provider.wait_until(reply.status, reply.headers, now=now, body=reply.body)
        raise NotYet(until or now + timedelta(seconds=60), "rate limited")
    if outcome == "retryable":
        circuits.record(key=keys.circuit, ok=False, tenant_id=keys.tenant_id)
        after = provider.wait_until(reply.status, reply.headers, now=now, body=reply.body)
        raise VendorError(
            f"{request.method} {_safe_url(request.url)} answered {reply.status}",
            retry_after=(after - now).total_seconds() if after else None,
        )
    if outcome == "fatal":
        # A vendor's paging position refused (Jira Cloud's nextPageToken expires): the same
        # query afresh from the committed checkpoint, which the inclusive cursor and its seen
        # hashes make safe. Once: the fresh query carries no position to refuse.
        fresh_checkpoint = provider.restart_checkpoint(reply.status, checkpoint)
        if fresh_checkpoint is not None:
            log.info(
                "%s refused the page position of run %s: reading afresh from its checkpoint",
                reader.connection.provider,
                reader.run.pk,
            )
            again = _next_request(reader, fresh_checkpoint)
            return _read(
                reader, fresh_checkpoint, again, _received(reader, _send_soon(reader, again), again)
            )
        raise RunEnds(
            f"{request.method} {_safe_url(request.url)} answered {reply.status}: "
            f"{reply.body[:300].decode(errors='replace')}",
            status=reply.status,
        )
    return provider.parse_page(
        reader.stream,
        request=request,
        status=reply.status,
        headers=reply.headers,
        body=reply.body,
        checkpoint=checkpoint,
        config=reader.config,
    )


# --- Writing a page ------------------------------------------------------------------------


@dataclass
class Draft:
    """A message's pages made ready to write, page by page as they arrive (while the vendor
    serves the next): what each record is to what is stored (the stored rows read per page,
    the message's earlier pages over them), the rows to COPY (never stored) and to upsert, and
    the events, numbered on from the connection's change counter as read before the lock (the
    lock's check makes sure it is still that). `write` stores it all, with the lock held."""

    run: IntegrationRun
    provider: Provider
    stream: str
    change: int
    now: datetime
    # external id: (row id, None when first stored by this message; as stored)
    known: dict[str, tuple[int | None, decisions.Stored]] = field(default_factory=dict)
    rows: dict[str, bulk.Row] = field(default_factory=dict)  # the last change of each record
    envelopes: list[Envelope] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # stored, unchanged, read by a full run
    counts: Counter[str] = field(default_factory=Counter)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    pages: int = 0
    not_modified: int = 0

    def __post_init__(self) -> None:
        self.full = self.stream in self.run.full
        self.needs_data = self.provider.stream(self.stream).needs_previous
        # The page's events share the handler's span: its ids looked up once, not per event.
        self.span = telemetry.current_ids()
        # A stream with nothing stored yet (its first read) has nothing to look up: the
        # message's own pages are all it can find (another writer of the stream would move
        # the checkpoint, and the lock's check drop these pages).
        self.any_stored = SyncRecord.objects.filter(
            connection_id=self.run.connection_id, stream=self.stream
        ).exists()
        if self.any_stored:
            self._compile_lookup()

    def _compile_lookup(self) -> None:
        """The stored rows of a page's records, by one query compiled here and run per page
        with the page's ids in place of these: Django's compiling and converting cost ten
        times the query for a page's hundred ids (measured: 1.9 against 0.2 ms a page)."""
        columns = ["external_id", "content_hash", "deleted_at", "id"]
        ids = {f"placeholder {uuid.uuid4()}"}  # no record's id: found among the parameters
        query = SyncRecord.objects.filter(
            connection_id=self.run.connection_id, stream=self.stream, external_id__one_of=ids
        ).values_list(*columns, *(["data"] if self.needs_data else []))
        self.sql, params = query.query.sql_with_params()
        self.one_of = SyncRecord._meta.get_field("external_id")
        self.params = list(params)
        self.slot = self.params.index(lookups.one_of_value(self.one_of, ids, db))

    def add(self, page: Page) -> None:
        run, name, now = self.run, self.stream, self.now
        new = {r.external_id for r in page.records if r.external_id not in self.known}
        if new and self.any_stored:
            with db.cursor() as cursor:
                self.params[self.slot] = lookups.one_of_value(self.one_of, new, db)
                cursor.execute(self.sql, self.params)
                for external_id, digest, deleted_at, pk, *data in cursor.fetchall():
                    previous = json.loads(data[0]) if data else None
                    as_stored = decisions.Stored(digest, deleted_at is not None, previous)
                    self.known[external_id] = (pk, as_stored)
        stored = {
            r.external_id: self.known[r.external_id][1]
            for r in page.records
            if r.external_id in self.known
        }
        hashes = {r.external_id: self.provider.content_hash(name, r.data) for r in page.records}
        for change in decisions.changes(page.records, stored=stored, hashes=hashes):
            record, action = change.record, change.action
            before = self.known.get(record.external_id)
            if action is None:
                self.counts["unchanged"] += 1
                if self.full and before is not None and before[0] is not None:
                    self.seen.append(before[0])
                continue
            self.change += 1
            self.counts[action] += 1  # "added", "updated" or "deleted"
            # A stored record's first_seen is not updated (UPDATED leaves it out).
            self.rows[record.external_id] = (
                run.tenant_id, run.connection_id, name, record.external_id, change.content_hash,
                HASH_ALGORITHM, _json(record.data), record.cursor, now, now, action,
                now if action == Action.DELETED else None, self.change, run.pk,
            )  # fmt: skip
            data = record.data if self.needs_data else None
            self.known[record.external_id] = (
                before[0] if before is not None else None,
                decisions.Stored(change.content_hash, action == Action.DELETED, data),
            )
            event = self.provider.factory_event(name, record, action, previous=change.previous)  # type: ignore[arg-type]
            if event is not None:
                number, span = self.change, self.span
                self.envelopes.append(
                    _event(run, name, change, event, number, run.tenant_id, now=now, span=span)
                )
        self.counts["unchanged"] += page.skipped
        self.checkpoint = page.checkpoint
        self.pages += 1
        self.not_modified += int(page.not_modified)

    def write(
        self, *, run: IntegrationRun, lock: SyncLock, stream: SyncStream, now: datetime
    ) -> None:
        """Store the records, publish their events, save the checkpoint and count: in the
        caller's transaction, with `lock` held (its change counter as the draft began)."""
        fresh = [row for key, row in self.rows.items() if self.known[key][0] is None]
        stored = [row for key, row in self.rows.items() if self.known[key][0] is not None]
        bulk.insert_rows(SyncRecord, RECORD_COLUMNS, fresh)
        if stored:
            bulk.upsert(SyncRecord, RECORD_COLUMNS, stored, unique=UNIQUE, update=UPDATED)
        if self.seen:
            SyncRecord.objects.filter(id__in=self.seen).update(seen_run=run.pk)
        services.publish_envelopes(self.envelopes, plain_data=True)  # decoded from JSON
        if self.change != lock.change:
            lock.change = self.change
            lock.save(update_fields=["change"])
        stream.checkpoint = self.checkpoint
        stream.last_run = run
        stream.updated = now
        stream.save(update_fields=["checkpoint", "last_run", "updated"])
        run.added += self.counts["added"]
        run.updated += self.counts["updated"]
        run.deleted += self.counts["deleted"]
        run.unchanged += self.counts["unchanged"]
        run.pages += self.pages
        run.not_modified += self.not_modified
        run.checkpoints_to = {**run.checkpoints_to, self.stream: self.checkpoint}


RECORD_COLUMNS = [
    "tenant_id", "connection_id", "stream", "external_id", "content_hash", "hash_algorithm",
    "data", "cursor", "first_seen", "last_modified", "last_action", "deleted_at", "change",
    "seen_run",
]  # fmt: skip
UNIQUE = ["connection_id", "stream", "external_id"]
UPDATED = [
    "content_hash", "hash_algorithm", "data", "cursor", "last_modified", "last_action",
    "deleted_at", "change", "seen_run",
]  # fmt: skip

# A record's data as JSON text for its row: msgspec encodes a page's records in a tenth of
# json.dumps's time (the data came from json, so nothing in it is beyond JSON).
_json_encoder = msgspec.json.Encoder()


def _json(data: Any) -> str:
    return _json_encoder.encode(data).decode()


# A run's and a connection's ids as text: formatted once, not four times per event.
_text = functools.lru_cache(maxsize=256)(str)


def _event(
    run: IntegrationRun,
    stream: str,
    change: decisions.Change,
    event: tuple[str, dict[str, Any]],
    number: int,
    tenant_id: Any,
    *,
    now: datetime,
    span: tuple[str, str] = ("", ""),
) -> Envelope:
    kind, data = event
    record = change.record
    # The change's number (the connection's counter, rolled back with a failed attempt) makes
    # the id: a re-run of a page publishes the same ids, and a record that changes back to an
    # earlier content, or comes back after a deletion, is a new event, not a duplicate dropped.
    # A connection's event ids count up with it: its new events go to one place in the index.
    connection_id = _text(run.connection_id)
    return services.build_envelope(
        tenant_id=tenant_id,
        type=kind,
        data={**data, "connectionId": connection_id, "stream": stream},
        source=f"integration:{connection_id}",
        source_id=f"{stream}:{record.external_id}",
        correlation_id=_text(run.pk),
        event_id=sequence_uuid(EVENTS, connection_id, number),
        occurred_at=now,
        trace_id=span[0],
        span_id=span[1],
    )


def sweep(
    *, run: IntegrationRun, lock: SyncLock, stream: SyncStream, provider: Provider, now: datetime
) -> int:
    """Mark-and-sweep after a complete full read of `stream`: what it did not see is deleted
    (soft: deleted_at, last_action deleted, a new change number), unless that is too much."""
    alive = SyncRecord.objects.filter(
        connection_id=run.connection_id, stream=stream.name, deleted_at__isnull=True
    )
    missing = list(
        alive.exclude(seen_run=run.pk).values_list(
            "id", "external_id", "data", "cursor", "content_hash"
        )
    )
    total = alive.count()
    ratio = float(setting("SYNC_MAX_DELETE_RATIO", 0.5))
    if not decisions.may_sweep(missing=len(missing), total=total, max_ratio=ratio):
        run.error = (
            f"Deletions not applied to {stream.name}: {len(missing)} of {total} records "
            f"missing is over the maximum delete ratio {ratio}."
        )
        return 0
    rows, envelopes = [], []
    for pk, external_id, data, cursor, digest in missing:
        lock.change += 1
        rows.append((pk, Action.DELETED, now, now, lock.change))
        record = providers.Record(external_id, cursor, data, deleted=True)
        change = decisions.Change(record, digest, Action.DELETED)
        event = provider.factory_event(stream.name, record, "deleted")
        if event is not None:
            envelopes.append(
                _event(run, stream.name, change, event, lock.change, run.tenant_id, now=now)
            )
    bulk.update_rows(SyncRecord, ["last_action", "deleted_at", "last_modified", "change"], rows)
    services.publish_envelopes(envelopes, plain_data=True)  # stored records: JSON
    if rows:
        lock.save(update_fields=["change"])
    run.deleted += len(rows)
    return len(rows)


# --- Ending runs ---------------------------------------------------------------------------


def _finish(
    run: IntegrationRun,
    lock: SyncLock,
    *,
    status: str,
    now: datetime,
    error: str = "",
    error_class: str = "",
    status_code: int | None = None,
) -> None:
    run.status = status
    run.finished = now
    if error:
        run.error = error[:4000]
    run.save()
    lock.run = None
    lock.last_run_at = run.started
    lock.save(update_fields=["run", "last_run_at"])
    state = SyncStream.State.IDLE if status != Status.FAILED else SyncStream.State.ERROR
    SyncStream.objects.filter(connection_id=run.connection_id, name__in=run.streams).update(
        state=state
    )
    tenant = Tenant.objects.get(pk=run.tenant_id)
    services.publish(
        tenant=tenant,
        type="IntegrationRunCompleted",
        data=completed_data(run),
        source="integrations.sync",
        source_id=str(run.pk),
        correlation_id=str(run.pk),
        event_id=uuid.uuid5(EVENTS, f"completed|{run.pk}|{status}"),
    )
    connection = IntegrationConnection.objects.get(pk=run.connection_id)
    if status == Status.FAILED:
        _report_failure(run, connection, error_class or "permanent", status_code, tenant)
    elif status == Status.SUCCEEDED:
        _resolve(run)


def completed_data(run: IntegrationRun) -> dict[str, Any]:
    """IntegrationRunCompleted's data (Nango's sync webhook, with the run's own counts)."""
    return {
        "runId": str(run.pk),
        "connectionId": str(run.connection_id),
        "trigger": run.trigger,
        "status": run.status,
        "success": run.status == Status.SUCCEEDED,
        "streams": list(run.streams),
        "responseResults": {"added": run.added, "updated": run.updated, "deleted": run.deleted},
        "unchanged": run.unchanged,
        "pages": run.pages,
        "requests": run.requests,
        "notModified": run.not_modified,
        "rateLimitedSeconds": round(run.rate_limited_seconds, 3),
        "checkpoints": {"from": run.checkpoints_from, "to": run.checkpoints_to},
        "startedAt": run.started.isoformat(),
        "finishedAt": run.finished.isoformat() if run.finished else None,
        "error": run.error,
    }


def _report_failure(
    run: IntegrationRun,
    connection: IntegrationConnection,
    error_class: str,
    status_code: int | None,
    tenant: Tenant,
) -> None:
    failure_id = run.failure_id or str(uuid.uuid5(EVENTS, f"failure|{run.pk}"))
    data: dict[str, Any] = {
        "failureId": failure_id,
        "kind": "sync",
        "attempt": run.attempt,
        "error": run.error or "the run failed",
        "errorClass": error_class,
        "provider": connection.provider,
        "subject": f"{connection.name} ({', '.join(run.streams)})",
        "connectionId": str(connection.pk),
        "runId": str(run.pk),
    }
    if status_code is not None:
        data["status"] = status_code
    services.publish(
        tenant=tenant,
        type="IntegrationFailed",
        data=data,
        source="integrations.sync",
        source_id=failure_id,
        event_id=uuid.uuid5(EVENTS, f"failed|{failure_id}|{run.attempt}|{run.pk}"),
    )


def _resolve(run: IntegrationRun) -> None:
    try:
        from integrations.failures.services import resolve_subject
    except ImportError:
        return
    resolve_subject(tenant_id=run.tenant_id, kind="sync", subject_id=str(run.connection_id))


def _auth_error(
    run: IntegrationRun,
    lock: SyncLock,
    connection: IntegrationConnection,
    why: str,
    *,
    now: datetime,
) -> None:
    """A human is needed: the connection goes to error (auth) and the run fails."""
    connection.status = IntegrationConnection.Status.ERROR
    connection.status_reason = f"auth: {why}"[:500]
    connection.updated = now
    connection.save(update_fields=["status", "status_reason", "updated"])
    _finish(
        run,
        lock,
        status=Status.FAILED,
        error=f"auth: {why}",
        error_class="auth",
        now=now,
        status_code=401,
    )


def on_dead(envelope: Envelope, reason: str) -> None:
    """The runtime gave up on a page (its attempts spent on 5xx or network errors): the run
    fails, the lock is released, and IntegrationFailed goes to IntegrationRetryWorker, which
    resumes from the checkpoint."""
    run_id = envelope.data.get("runId")
    if envelope.type != COMMAND or not run_id:
        return
    run = IntegrationRun.objects.filter(pk=run_id, tenant_id=envelope.tenant_id).first()
    if run is None or run.status != Status.RUNNING:
        return
    connection = IntegrationConnection.objects.get(pk=run.connection_id)
    lock = _lock(connection)
    # The status the vendor answered, not any "429" (a port such as 44299 in the URL).
    error_class = "rate_limited" if " answered 429" in reason else "transient"
    _finish(
        run, lock, status=Status.FAILED, error=reason, error_class=error_class, now=timezone.now()
    )


# --- Requests, limits, waiting -------------------------------------------------------------


def _send_soon(reader: Reader, request: OutboundRequest) -> Future[outbound.Reply]:
    """Send `request`, with the secret's headers, from core.outbound's threads: the caller
    reads the page before while the vendor serves it. PermanentError at once for headers the
    secret cannot make."""
    try:
        headers = {**request.headers, **reader.provider.auth_headers(reader.secret, reader.config)}
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    reader.requests += 1
    return outbound.request_soon(
        request.method,
        request.url,
        headers=headers,
        body=request.body,
        timeout=float(setting("SYNC_REQUEST_TIMEOUT_SECONDS", 30.0)),
    )


def _received(
    reader: Reader, sent: Future[outbound.Reply], request: OutboundRequest
) -> outbound.Reply:
    """The reply to a request sent. No reply at all (refused, reset, timed out: urllib3's
    network errors, worth another try) is a VendorError, and a failed call for the circuit; a
    destination the guard refuses is a PermanentError."""
    try:
        reply = sent.result()
    except outbound.BlockedDestination as exc:
        raise PermanentError(str(exc)) from None
    except Exception as exc:
        _no_reply(reader.keys)
        raise VendorError(f"{request.method} {_safe_url(request.url)}: {describe(exc)}") from None
    reader.read_bytes += len(reply.body)
    return reply


def _safe_url(url: str) -> str:
    return url.split("?", 1)[0]


def _refreshed(connection: IntegrationConnection, secret: dict[str, Any]) -> dict[str, Any] | None:
    """A fresh access token for a secret that can mint one, stored as the credential's current
    secret; None for one that cannot (a personal access token: a human must replace it)."""
    provider = vendor.provider_of(connection.provider)
    if (
        provider is None
        or provider.token_request(secret=secret, config=connection.config or {}) is None
    ):
        return None
    try:
        fresh = vendor.refresh(connection, secret)
    except (PermanentError, TransientError) as exc:
        log.warning("token refresh of connection %s failed: %s", connection.pk, exc)
        return None
    credentials.store_refreshed(connection=connection, secret=fresh)
    return fresh


@dataclass(frozen=True)
class Limits:
    """The rate bucket and the circuit a connection's calls go through, and their tenant (whose
    API and console show them)."""

    bucket: str
    circuit: str
    tenant_id: Any


def _limit_keys(connection: IntegrationConnection, provider: Provider) -> Limits:
    scope = provider.rate_limit.scope
    bucket = limit_keys.connection(connection.pk)
    if scope == "credential":
        credential = (
            IntegrationCredential.objects.filter(connection=connection).order_by("-created").first()
        )
        if credential is not None:
            bucket = limit_keys.credential(credential.pk)
    elif scope == "host":
        hostname = urlsplit(provider.base_url(connection.base_url)).hostname or ""
        bucket = limit_keys.host(hostname)
    return Limits(bucket, limit_keys.connection(connection.pk), connection.tenant_id)


def _circuit_permit(keys: Limits, *, now: datetime) -> None:
    """An open circuit: NotYet, before any request."""
    open_until = circuits.permit(key=keys.circuit, now=now)
    if open_until is not None:
        raise NotYet(open_until, f"circuit {keys.circuit} is open")


def _no_reply(keys: Limits) -> None:
    """No reply at all (refused, reset, timed out): a failed call for the circuit."""
    circuits.record(key=keys.circuit, ok=False, tenant_id=keys.tenant_id)


def _observe(
    keys: Limits, provider: Provider, reply: outbound.Reply, tokens: Tokens, *, now: datetime
) -> None:
    policy = provider.rate_limit
    said = limit_decisions.tightening(reply.headers, status=reply.status, policy=policy, now=now)
    if said.until is None and (said.remaining is None or said.remaining >= policy.burst):
        # Nothing to tighten (no wait, more left at the vendor than the bucket's burst, which
        # is more than the message holds): the bucket's UPDATE would change nothing but its
        # `updated`, a committed write per page.
        return
    tokens.forfeit()  # the vendor has fewer left than the message holds, maybe: ask the bucket
    buckets.observe(
        key=keys.bucket,
        headers=reply.headers,
        status=reply.status,
        policy=provider.rate_limit,
        now=now,
    )


def _wait(run: IntegrationRun, lock: SyncLock, until: datetime, *, now: datetime, why: str) -> None:
    seconds = max(0.0, (until - now).total_seconds())
    run.rate_limited_seconds += seconds
    if seconds > float(setting("SYNC_MAX_WAIT_SECONDS", 900)):
        _finish(run, lock, status=Status.PAUSED, error=f"{why} until {until.isoformat()}", now=now)
        return
    run.save()
    raise NotYet(until, f"{why} until {until.isoformat()}")
