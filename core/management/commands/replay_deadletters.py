"""`manage.py replay_deadletters`: send dead letters back to their workers once fixed.

Replay goes through core.runtime.replay, which only revives a message that is still dead, so
running this twice, or beside someone replaying from the admin, replays each letter once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.utils import timezone

from core.management.commands.create_tenant import tenant_by_slug
from core.models import DeadLetter
from core.runtime import registry
from core.runtime.replay import ReplayFilter, open_dead_letters, replay
from core.since import parse_since as parse_iso_or_duration

# Below this many letters a run is over before a bar would tell anything.
PROGRESS_MIN_ITEMS = 20
PAGE_SIZE = 500


def parse_since(value: str, *, now: datetime) -> datetime:
    try:
        return parse_iso_or_duration(value, now=now)
    except ValueError as exc:
        raise CommandError(f"--since {exc}") from None


class ProgressBar:
    """`[#####.....] 120/500`, redrawn in place on one line about a hundred times per run."""

    WIDTH = 30

    def __init__(self, out: OutputWrapper, *, total: int) -> None:
        self.out = out
        self.total = total
        self.step = max(1, total // 100)

    def show(self, done: int) -> None:
        if done % self.step and done != self.total:
            return
        filled = self.WIDTH * done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        # style_func=str: stderr would otherwise paint every redraw in the error colour.
        self.out.write(f"\r[{bar}] {done}/{self.total}", style_func=str, ending="")

    def close(self) -> None:
        self.out.write("", style_func=str)


def first_line(text: str) -> str:
    return text.strip().partition("\n")[0]


def letters_to_replay(selection: ReplayFilter, *, until: datetime) -> Iterator[DeadLetter]:
    """The selected open letters that died before `until`, read a page at a time; the caller
    replays each page before the next one is read.

    Not one .iterator() over the whole run: each replay writes and kicks its worker, and none
    of that belongs under a cursor still open (django-q2's own broker used to close the
    connection under it; core.runtime.queue's no longer does). A replayed letter leaves the
    open set, so asking for the first page again moves on. A letter that died again during
    the run has a new `created` and ends it, so that no letter is replayed twice in one run
    and a worker that keeps failing cannot make the run endless.
    """
    remaining = selection.limit
    while remaining is None or remaining > 0:
        size = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
        page = list(open_dead_letters(replace(selection, limit=size)))
        for letter in page:
            if letter.created > until:
                return
            yield letter
        if len(page) < size:
            return
        if remaining is not None:
            remaining -= size


class Command(BaseCommand):
    help = "Replay open dead letters (all, or those matching the filters) to their workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--worker", help="Only this worker's dead letters.")
        parser.add_argument("--tenant", metavar="SLUG", help="Only this tenant's.")
        parser.add_argument("--event-type", help="Only dead letters of this event type.")
        parser.add_argument(
            "--since",
            metavar="WHEN",
            help="Only those that died since WHEN: an ISO datetime, or a duration like 2h, 7d.",
        )
        parser.add_argument("--limit", type=int, help="Replay at most N, the oldest first.")
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be replayed; change nothing."
        )
        parser.add_argument(
            "--progress", action="store_true", help="Show a progress bar even when not on a TTY."
        )

    def handle(
        self,
        *,
        worker: str | None,
        tenant: str | None,
        event_type: str | None,
        since: str | None,
        limit: int | None,
        dry_run: bool,
        progress: bool,
        **options: Any,
    ) -> None:
        selection = ReplayFilter(
            worker=_known_worker(worker) if worker else None,
            tenant_slug=tenant_by_slug(tenant).slug if tenant else None,
            event_type=event_type or None,
            since=parse_since(since, now=timezone.now()) if since else None,
            limit=_positive(limit) if limit is not None else None,
        )
        if dry_run:
            self._list(selection)
        else:
            self._replay(selection, progress=progress)

    def _list(self, selection: ReplayFilter) -> None:
        letters = open_dead_letters(selection).select_related("tenant", "message")
        count = 0
        # A dry run writes nothing, so it can stream the rows through one cursor.
        for letter in letters.iterator():
            count += 1
            self.stdout.write(
                f"{letter.worker}  {letter.event_type}  {letter.message.event_id}  "
                f"{letter.tenant.slug}  {first_line(letter.reason)}"
            )
        self.stdout.write(f"Dry run: would replay {count}; nothing was changed.")

    def _replay(self, selection: ReplayFilter, *, progress: bool) -> None:
        letters = letters_to_replay(selection, until=timezone.now())
        bar = self._progress_bar(selection, forced=progress)
        replayed: Counter[str] = Counter()
        already: Counter[str] = Counter()
        for done, letter in enumerate(letters, start=1):
            # False when someone else revived the message since it was selected.
            counter = replayed if replay(letter) else already
            counter[letter.worker] += 1
            if bar:
                bar.show(done)
        if bar:
            bar.close()
        self._summarize(replayed, already)

    def _progress_bar(self, selection: ReplayFilter, *, forced: bool) -> ProgressBar | None:
        if not (forced or self.stderr.isatty()):
            return None  # spare the count query when no one would see the bar
        total = open_dead_letters(selection).count()
        return ProgressBar(self.stderr, total=total) if total > PROGRESS_MIN_ITEMS else None

    def _summarize(self, replayed: Counter[str], already: Counter[str]) -> None:
        self.stdout.write(f"Replayed {replayed.total()}, already replayed {already.total()}.")
        for name in sorted(replayed | already):
            self.stdout.write(
                f"  {name}: replayed {replayed[name]}, already replayed {already[name]}"
            )


def _known_worker(name: str) -> str:
    try:
        return registry.get(name).name
    except LookupError:
        known = ", ".join(sorted(w.name for w in registry.all_workers()))
        raise CommandError(f"No worker named {name!r}. Known workers: {known}.") from None


def _positive(limit: int) -> int:
    # A limit of 0 would read as "no limit" to ReplayFilter and replay everything.
    if limit < 1:
        raise CommandError(f"--limit must be at least 1, not {limit}.")
    return limit
