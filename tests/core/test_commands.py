"""The operator's management commands: tenants, API keys, publishing, replaying dead letters."""

from __future__ import annotations

import io
import re
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from core import services
from core.envelope import Envelope
from core.management.commands import replay_deadletters
from core.models import ApiKey, DeadLetter, Event, Message, Tenant
from core.runtime import dispatch, replay
from core.runtime.errors import PermanentError
from tests.effects.models import Effect

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    stdout = io.StringIO()
    call_command(*args, stdout=stdout, stderr=io.StringIO())
    return stdout.getvalue()


class Fragile:
    """A handler that fails for good until it is repaired, then records an Effect per event."""

    def __init__(self) -> None:
        self.broken = True

    def __call__(self, envelope: Envelope) -> None:
        if self.broken:
            raise PermanentError("the deploy service said no\n<html>502 Bad Gateway</html>")
        Effect.objects.create(event_id=envelope.event_id, worker="TestWorker")


@pytest.fixture
def fragile(make_worker) -> Fragile:
    handler = Fragile()
    make_worker(handler=handler, events=("DeploymentPromoted", "BuildFailed"))
    return handler


def kill(tenant: Tenant, *, type: str = "DeploymentPromoted", count: int = 1) -> list[uuid.UUID]:
    """Publish events that TestWorker's broken handler refuses: each ends in a dead letter."""
    ids = [services.publish(tenant=tenant, type=type, data={"n": n}).event_id for n in range(count)]
    dispatch.drain("TestWorker")
    return ids


def states(worker: str = "TestWorker") -> dict[uuid.UUID, str]:
    return dict(Message.objects.filter(worker=worker).values_list("event_id", "state"))


# create_tenant


def test_it_creates_a_tenant_and_prints_its_id(db):
    out = run("create_tenant", "initech", "--name", "Initech")

    tenant = Tenant.objects.get(slug="initech")
    assert tenant.name == "Initech"
    assert str(tenant.id) in out


def test_it_refuses_a_duplicate_slug_with_a_clear_error(tenant):
    with pytest.raises(CommandError, match=r"'acme' was not created\. slug: .*already exists"):
        run("create_tenant", "acme")
    assert Tenant.objects.count() == 1


def test_it_refuses_a_slug_that_is_not_a_slug(db):
    with pytest.raises(CommandError, match="slug: Enter a valid"):
        run("create_tenant", "not a slug")


# create_api_key


def test_it_prints_a_key_that_authenticates_and_stores_only_its_digest(tenant):
    out = run("create_api_key", "--tenant", "acme", "--name", "ci")

    plain = re.search(r"pk_\S+", out).group()
    lookup, _, secret = plain.removeprefix(ApiKey.PREFIX).partition("_")
    key = ApiKey.objects.get(lookup=lookup)
    assert (key.tenant, key.name) == (tenant, "ci")
    assert key.matches(secret)
    assert secret not in str(list(ApiKey.objects.values()))
    assert "will not be shown again" in out
    assert f"Authorization: Bearer {plain}" in out


def test_it_names_an_unknown_tenant_and_how_to_create_it(db):
    with pytest.raises(CommandError, match=r"'nope'.*manage.py create_tenant nope"):
        run("create_api_key", "--tenant", "nope")
    assert not ApiKey.objects.exists()


# publish_event


def test_it_publishes_an_event_and_names_the_workers_it_was_addressed_to(tenant, make_worker):
    make_worker("Alpha")
    make_worker("Beta")

    out = run(
        "publish_event",
        "--tenant",
        "acme",
        "--type",
        "DeploymentPromoted",
        "--data",
        '{"service": "checkout"}',
        "--source",
        "argo",
        "--source-id",
        "42",
        "--correlation-id",
        "release-7",
    )

    event = Event.objects.get()
    assert (event.tenant, event.data) == (tenant, {"service": "checkout"})
    assert (event.source, event.source_id, event.correlation_id) == ("argo", "42", "release-7")
    assert str(event.id) in out
    assert "Addressed to: Alpha, Beta" in out


def test_it_says_so_when_no_built_worker_subscribes_to_the_event(tenant, without_workers):
    without_workers("TelemetryCorrelationWorker", "WebhookDeliveryWorker")

    out = run("publish_event", "--tenant", "acme", "--type", "BuildCompleted", "--data", "{}")

    assert "no built worker subscribes to it yet" in out
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "error"),
    [("{service: checkout}", "not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_it_refuses_data_that_is_not_a_json_object(tenant, data, error):
    with pytest.raises(CommandError, match=error):
        run("publish_event", "--tenant", "acme", "--type", "DeploymentPromoted", "--data", data)
    assert not Event.objects.exists()


def test_it_refuses_an_unknown_event_type_and_lists_the_known_ones(tenant):
    with pytest.raises(CommandError, match=r"'DeployPromoted'.*Known types: .*DeploymentPromoted"):
        run("publish_event", "--tenant", "acme", "--type", "DeployPromoted", "--data", "{}")
    assert not Event.objects.exists()


def test_it_lets_an_operator_publish_one_of_the_platforms_own_events(tenant):
    # Unlike POST /api/events: an operator tries a worker or a subscriber with the very event
    # it takes (README, "Publish").
    run("publish_event", "--tenant", "acme", "--type", "RuntimeSignalDetected", "--data", "{}")

    assert Event.objects.get().type == "RuntimeSignalDetected"


def test_it_refuses_to_publish_for_an_unknown_tenant(db):
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        run("publish_event", "--tenant", "nope", "--type", "DeploymentPromoted", "--data", "{}")


# replay_deadletters


def test_it_replays_a_dead_letter_that_is_handled_at_the_next_drain(tenant, fragile):
    [event_id] = kill(tenant)
    fragile.broken = False

    out = run("replay_deadletters")
    dispatch.drain("TestWorker")

    assert "Replayed 1, already replayed 0." in out
    assert "TestWorker: replayed 1, already replayed 0" in out
    assert states() == {event_id: "done"}
    assert Effect.objects.filter(event_id=event_id).count() == 1
    assert DeadLetter.objects.get().replays == 1


def test_it_replays_nothing_the_second_time_so_the_handler_acts_once(tenant, fragile):
    [event_id] = kill(tenant)
    fragile.broken = False

    run("replay_deadletters")
    second = run("replay_deadletters")
    dispatch.drain("TestWorker")

    assert "Replayed 0, already replayed 0." in second
    assert Effect.objects.filter(event_id=event_id).count() == 1
    assert DeadLetter.objects.get().replays == 1


def test_it_counts_a_letter_revived_since_it_was_selected_as_already_replayed(
    tenant, fragile, monkeypatch
):
    kill(tenant)
    run("replay_deadletters")
    # As if someone replayed it from the admin between our select and our replay.
    monkeypatch.setattr(replay_deadletters, "open_dead_letters", lambda f: DeadLetter.objects.all())

    out = run("replay_deadletters")

    assert "Replayed 0, already replayed 1." in out
    assert DeadLetter.objects.get().replays == 1


def test_it_lists_what_a_dry_run_would_replay_and_changes_nothing(tenant, fragile):
    [event_id] = kill(tenant)
    before = list(DeadLetter.objects.values())

    out = run("replay_deadletters", "--dry-run")

    assert re.search(
        rf"TestWorker +DeploymentPromoted +{event_id} +acme +PermanentError: "
        "the deploy service said no$",
        out,
        re.MULTILINE,
    )
    assert "502 Bad Gateway" not in out  # only the reason's first line
    assert "would replay 1" in out
    assert list(DeadLetter.objects.values()) == before
    assert states() == {event_id: "dead"}


def test_it_replays_only_the_given_workers_letters(tenant, fragile, make_worker):
    make_worker("Other", handler=Fragile())
    [event_id] = kill(tenant)
    dispatch.drain("Other")

    run("replay_deadletters", "--worker", "Other")

    assert states("Other") == {event_id: "pending"}
    assert states("TestWorker") == {event_id: "dead"}


def test_it_replays_only_the_given_tenants_letters(tenant, other_tenant, fragile):
    [ours] = kill(tenant)
    [theirs] = kill(other_tenant)

    run("replay_deadletters", "--tenant", "globex")

    assert states() == {ours: "dead", theirs: "pending"}


def test_it_replays_only_letters_of_the_given_event_type(tenant, fragile):
    [promoted] = kill(tenant)
    [failed] = kill(tenant, type="BuildFailed")

    run("replay_deadletters", "--event-type", "BuildFailed")

    assert states() == {promoted: "dead", failed: "pending"}


@pytest.mark.parametrize("since", ["2h", "90m", "7d", "2025-01-01T12:00:00Z", "2025-01-01"])
def test_it_replays_only_letters_that_died_since_the_given_time(tenant, fragile, since):
    [old, recent] = kill(tenant, count=2)
    long_ago = datetime(2024, 1, 1, tzinfo=UTC)  # before every --since of this test
    DeadLetter.objects.filter(message__event_id=old).update(created=long_ago)

    run("replay_deadletters", "--since", since)

    assert states() == {old: "dead", recent: "pending"}


def test_it_replays_at_most_the_limit_the_oldest_first(tenant, fragile):
    ids = kill(tenant, count=3)
    DeadLetter.objects.filter(message__event_id=ids[2]).update(
        created=timezone.now() - timedelta(days=1)
    )

    out = run("replay_deadletters", "--limit", "2")

    assert "Replayed 2," in out
    assert states()[ids[2]] == "pending"
    assert sorted(states().values()) == ["dead", "pending", "pending"]


@pytest.mark.parametrize(("limit", "replayed"), [([], 5), (["--limit", "3"], 3)])
def test_it_replays_page_after_page(tenant, fragile, monkeypatch, limit, replayed):
    monkeypatch.setattr(replay_deadletters, "PAGE_SIZE", 2)
    kill(tenant, count=5)

    out = run("replay_deadletters", *limit)

    assert f"Replayed {replayed}, already replayed 0." in out
    assert list(states().values()).count("pending") == replayed


def test_it_replays_a_letter_once_per_run_even_when_it_dies_again_meanwhile(
    tenant, fragile, monkeypatch
):
    monkeypatch.setattr(replay_deadletters, "PAGE_SIZE", 2)
    kill(tenant, count=3)

    def replay_into_a_live_cluster(letter: DeadLetter) -> bool:
        revived = replay.replay(letter)
        dispatch.drain("TestWorker")  # the handler is still broken: the letter dies again
        return revived

    monkeypatch.setattr(replay_deadletters, "replay", replay_into_a_live_cluster)

    out = run("replay_deadletters")

    assert "Replayed 3, already replayed 0." in out
    assert list(DeadLetter.objects.values_list("replays", flat=True)) == [1, 1, 1]


def test_it_draws_a_progress_bar_on_stderr_for_a_long_run(tenant, fragile):
    kill(tenant, count=25)
    stderr = io.StringIO()

    call_command("replay_deadletters", "--progress", stdout=io.StringIO(), stderr=stderr)

    assert stderr.getvalue().startswith("\r[")
    assert stderr.getvalue().endswith(f"\r[{'#' * 30}] 25/25\n")


def test_it_draws_no_progress_bar_when_stderr_is_not_a_terminal(tenant, fragile):
    kill(tenant, count=25)
    stderr = io.StringIO()

    call_command("replay_deadletters", stdout=io.StringIO(), stderr=stderr)

    assert stderr.getvalue() == ""


def test_it_names_the_known_workers_when_the_worker_is_unknown(fragile):
    with pytest.raises(CommandError, match=r"No worker named 'Nope'. Known workers: .*TestWorker"):
        run("replay_deadletters", "--worker", "Nope")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--since", "yesterday"], "neither an ISO datetime"),
        (["--since", "2h30"], "neither an ISO datetime"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--tenant", "nope"], "No tenant with slug 'nope'"),
    ],
)
def test_it_refuses_bad_options_before_replaying_anything(tenant, fragile, args, error):
    kill(tenant)

    with pytest.raises(CommandError, match=error):
        run("replay_deadletters", *args)
    assert set(states().values()) == {"dead"}


def test_it_remembers_a_stop_that_comes_before_the_cluster_has_started():
    # Ctrl-C while `make run` is still starting (under load, migrations and schedules take a
    # while): django-q2's Cluster has no sentinel yet, and stopping it then raised in a thread.
    import threading

    from django_q.cluster import Cluster

    from core.management.commands.qcluster import _graceful_stop
    from core.runtime import shutdown

    previous = {
        signal.SIGTERM: signal.getsignal(signal.SIGTERM),
        signal.SIGINT: signal.getsignal(signal.SIGINT),
    }
    shutdown.install()
    try:
        cluster = Cluster()  # installs django-q2's own handlers: restored below
        threads = threading.active_count()

        _graceful_stop(cluster)(signal.SIGINT, None)

        assert shutdown.requested()  # handle() sees it and stops the cluster once it exists
        assert threading.active_count() == threads  # no thread to stop what does not exist
    finally:
        shutdown.reset()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
