"""The operator's console: tenants, API keys, and the worker runtime's tables.

The runtime's tables are the platform's record of what happened, so the admin shows them and
never edits them. The operator's writes are issuing and revoking a key and replaying a dead
letter, and they go through the same code paths as everywhere else (ApiKey.issue, revoked=now,
core.runtime.replay). The landing page is the admin index (core.console,
templates/admin/core/landing.html); the worker health page hangs beside the dead letters.

Lists of the runtime's tables grow with the traffic (millions of events and messages), so they
search by exact ids on indexes, filter on choices known in code (not a DISTINCT over the
table) or on a value typed exactly (ExactFilter), and count the rows they list only once
(show_full_result_count off: not the whole table again beside them).
"""

from __future__ import annotations

import json
import re
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django_q import admin as q_admin
from django_q.models import Failure as FailedTask
from django_q.models import OrmQ, Schedule, Success

from core import console, events, subjects
from core.admin_actions import (
    Cell,
    Done,
    ModelAdmin,
    ObjectActionsAdmin,
    Preview,
    confirmed,
    object_action,
)
from core.formats import format_moment
from core.models import ApiKey, DeadLetter, Event, Failure, Message, Tenant
from core.runtime import health, registry, replay
from core.subjects import Subject
from core.tracecontext import is_trace_id

if TYPE_CHECKING:  # generic in django-stubs only (see core.admin_actions.ModelAdmin)
    TabularInline = admin.TabularInline[Any, Any]
    StackedInline = admin.StackedInline[Any, Any]
    ModelForm = forms.ModelForm[Any]
else:
    TabularInline, StackedInline = admin.TabularInline, admin.StackedInline
    ModelForm = forms.ModelForm


def pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


def fieldset_fields(fieldsets: Sequence[tuple[Any, Mapping[str, Any]]]) -> list[str]:
    """Every field of `fieldsets`: those of a page that is read-only throughout."""
    return [field for _, options in fieldsets for field in options["fields"]]


def truncated(text: str, length: int = 80) -> str:
    return Truncator(text).chars(length)


def first_line(text: str, length: int = 80) -> str:
    """An error's first line, clipped: a list cell, with the whole on the object's page."""
    return truncated(text.strip().partition("\n")[0], length)


def clipped_cell(text: str, length: int) -> str:
    """A list cell clipped to `length` characters, the whole in its tooltip. It may break
    anywhere (templates/admin/core/change_list.html), so that no unbroken token (an id, a URL)
    widens the table past a laptop's 1440 px."""
    return format_html('<span class="clip" title="{}">{}</span>', text, truncated(text, length))


def moment_cell(moment: datetime | None) -> str:
    """A time in the one format (core.formats), its date and its time of day each unbroken but
    free to sit on two lines: a list's column of times need not be as wide as the whole. "-"
    for none."""
    if moment is None:
        return "-"
    date, _, time = format_moment(moment).partition(" ")
    return format_html('<span class="nowrap">{}</span> <span class="nowrap">{}</span>', date, time)


def moment_column(
    field: str, description: str, *, missing: str = "-", sortable: bool = True
) -> Callable[[Any, Any], str]:
    """A list column of one time field in the one format (moment_cell), sorted by the field;
    `missing` where it is empty."""

    @admin.display(description=description, ordering=field if sortable else None)
    def cell(self: Any, obj: Any) -> str:
        moment = getattr(obj, field)
        return missing if moment is None else moment_cell(moment)

    return cell


def under(first: str, second: str) -> str:
    """Two facts in one list cell, the second quieter, on the line below."""
    return format_html('{}<br><span class="quiet">{}</span>', first, second)


def link(url: str | None, text: str) -> str:
    return format_html('<a href="{}">{}</a>', url, text) if url else format_html("{}", text)


class ReadOnlyMixin:
    """View permission only: these rows are written by the runtime, and an edit by hand would
    break the story they tell (and the idempotency marks they carry)."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


# --- Filters and search on choices known in code ---------------------------------------------


class WorkerFilter(admin.SimpleListFilter):
    """The registry's workers: listing them from code spares a DISTINCT over every row."""

    title = "worker"
    parameter_name = "worker"

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin) -> list[tuple[str, str]]:
        return [(w.name, w.name) for w in sorted(registry.all_workers(), key=lambda w: w.name)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(worker=self.value()) if self.value() else queryset


class EventTypeFilter(admin.SimpleListFilter):
    """Every type of the event catalog (core.events), for a model whose `field` holds one."""

    title = "event type"
    parameter_name = "type"
    field = "type"

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(events.catalog())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class MessageTypeFilter(EventTypeFilter):
    field = "event__type"


class DeadLetterTypeFilter(EventTypeFilter):
    parameter_name = "event_type"
    field = "event_type"


class ExactFilter(admin.ListFilter):
    """A box in the filter sidebar: the rows whose `field` is exactly what was typed there (for a
    field of any value, such as an event's source, which no list of choices can hold)."""

    parameter_name: str
    field: str
    template = "admin/core/exact_filter.html"

    def __init__(
        self,
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Model],
        model_admin: ModelAdmin,
    ) -> None:
        super().__init__(request, params, model, model_admin)
        if self.parameter_name in params:
            self.used_parameters[self.parameter_name] = params.pop(self.parameter_name)[-1]

    def value(self) -> str:
        return str(self.used_parameters.get(self.parameter_name, "")).strip()

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_name]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        # One "choice": the box, the list's other parameters kept as the form's hidden fields.
        kept = [
            (name, value)
            for name, values in changelist.filter_params.items()
            if name != self.parameter_name
            for value in values
        ]
        yield {
            "parameter": self.parameter_name,
            "value": self.value(),
            "kept": kept,
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
        }


class SourceFilter(ExactFilter):
    title = "source"
    parameter_name = "source"
    field = "source"


class MessageSourceFilter(SourceFilter):
    field = "event__source"


def parse_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


# --- Tenants and API keys ----------------------------------------------------------------------


@admin.register(Tenant)
class TenantAdmin(ModelAdmin):
    list_display = ["slug", "name", "created"]
    search_fields = ["slug"]


class ApiKeyForm(ModelForm):
    """What an operator chooses for a new key; its secret is drawn by ApiKey.issue."""

    class Meta:
        model = ApiKey
        fields = ["tenant", "name"]
        help_texts = {"name": "What the key is for, e.g. 'ci' or 'checkout-service'."}


API_KEY_ADD_FIELDS = ("tenant", "name")  # what the operator chooses; ApiKey.issue the rest
API_KEY_FIELDS = ("tenant", "name", "display", "created", "last_used", "revoked")


@admin.register(ApiKey)
class ApiKeyAdmin(ObjectActionsAdmin):
    # The digest is in no field list: it is what a presented key is checked against, so showing
    # it helps nobody and editing it would silently swap the key. The plain key is shown once,
    # on the page that answers the add form (as `manage.py create_api_key` prints it once),
    # and is never stored: not in the database, a message or the session.
    list_display = ["display", "tenant", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked", admin.EmptyFieldListFilter), "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["lookup", "name", "tenant__slug"]
    search_help_text = "A key's prefix (the 16 characters after pk_), its name or a tenant."
    fields = API_KEY_FIELDS
    actions = ["revoke_selected"]
    object_actions = ["revoke"]
    form = ApiKeyForm

    def __init__(self, model: type[ApiKey], admin_site: admin.AdminSite) -> None:
        super().__init__(model, admin_site)
        # The plain key between save_model and response_add of one add request.
        self._issued: weakref.WeakKeyDictionary[HttpRequest, str] = weakref.WeakKeyDictionary()

    @admin.display(description="key")
    def display(self, key: ApiKey) -> str:
        return f"{ApiKey.PREFIX}{key.lookup}_…"

    created_at = moment_column("created", "created")
    last_used_at = moment_column("last_used", "last used", missing="never")
    revoked_at = moment_column("revoked", "revoked")

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        return API_KEY_ADD_FIELDS if obj is None else API_KEY_FIELDS

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        # A key's tenant and secret never change; its name may.
        return () if obj is None else ("tenant", "display", "created", "last_used", "revoked")

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # A revoked key stays, so that last_used and revoked still answer "who used it, when".
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("core.change_apikey"))

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued, plain = ApiKey.issue(tenant=obj.tenant, name=obj.name)
        obj.pk, obj.lookup, obj.digest, obj.created = (
            issued.pk,
            issued.lookup,
            issued.digest,
            issued.created,
        )
        self._issued[request] = plain

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The one page that shows the key: rendered in answer to the form's POST, not
        redirected to, so that the key is in no URL, message or session (and, as every admin
        page, sent with Cache-Control: no-store)."""
        plain = self._issued.pop(request)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "opts": self.opts,
            "key": obj,
            "plain": plain,
            "key_url": reverse("admin:core_apikey_change", args=[obj.pk]),
        }
        return TemplateResponse(request, "admin/core/apikey/issued.html", context)

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked__isnull=True))
        ApiKey.objects.filter(pk__in=[k.pk for k in keys]).update(revoked=timezone.now())
        for key in keys:
            self.log_change(request, key, "Revoked")
        self.message_user(request, f"Revoked {len(keys)} API key(s).", messages.SUCCESS)

    @object_action(label="Revoke", permission="revoke", shown=lambda key: key.revoked is None)
    def revoke(self, request: HttpRequest, key: ApiKey) -> Done:
        if not ApiKey.objects.filter(pk=key.pk, revoked__isnull=True).update(
            revoked=timezone.now()
        ):
            return Done(f"{key} was already revoked.", messages.WARNING)
        self.log_change(request, key, "Revoked")
        return Done(f"Revoked {key}: requests with it now get 401.")


# --- Events and messages -------------------------------------------------------------------------


class MessageInline(ReadOnlyMixin, TabularInline):
    model = Message
    fields = readonly_fields = ("worker", "state", "attempts", "due_at", "handled_at", "error")
    show_change_link = True
    extra = 0

    @admin.display(description="last error")
    def error(self, message: Message) -> str:
        return first_line(message.last_error)


def trace_url(trace_id: str) -> str | None:
    """The trace's page in the console, found by its id (a search on an index)."""
    if not trace_id or not is_trace_id(trace_id):
        return None
    return reverse("admin:observability_tracerecord_changelist") + f"?q={trace_id}"


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ["type", "recorded", "tenant", "source_ref", "trace"]
    list_filter = [EventTypeFilter, SourceFilter, "tenant"]
    list_select_related = ["tenant"]
    # Newest first, on recorded_at's index. No date hierarchy: its year list is a DISTINCT
    # over the whole table.
    ordering = ["-recorded_at"]
    search_fields = ["=id"]  # the box; get_search_results says what it finds
    search_help_text = (
        "An eventId, a traceId (32 hex digits) or a sourceId, exactly; filter by type, source "
        "and tenant."
    )
    show_full_result_count = False
    fields = readonly_fields = (
        "id", "type", "tenant", "trace", "span_id", "correlation_id", "source", "source_id",
        "occurred_at", "recorded_at", "to_worker", "data_json",
    )  # fmt: skip
    inlines = [MessageInline]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        """Each kind of id on its own index, never a LIKE over the table."""
        return search_events(queryset, search_term), False

    recorded = moment_column("recorded_at", "recorded at")

    @admin.display(description="source, source id", ordering="source")
    def source_ref(self, event: Event) -> str:
        if not event.source_id:
            return event.source or "-"
        return under(event.source or "-", clipped_cell(event.source_id, 40))

    @admin.display(description="trace id", ordering="trace_id")
    def trace(self, event: Event) -> str:
        return link(trace_url(event.trace_id), clipped_cell(event.trace_id, 32))

    @admin.display(description="data")
    def data_json(self, event: Event) -> str:
        return pretty_json(event.data)


def search_events(queryset: QuerySet[Event], term: str) -> QuerySet[Event]:
    """An eventId (the primary key), a traceId or a sourceId, compared exactly on their
    indexes; nothing else (an empty term: everything)."""
    term = term.strip()
    if not term:
        return queryset
    # A sourceId may be anything, a UUID (a delivery's, a batch's) too; 32 hex digits may be
    # a traceId or an eventId written without its dashes.
    found = Q(source_id=term)
    if (event_id := parse_uuid(term)) is not None:
        found |= Q(id=event_id)
    if is_trace_id(term.lower()):
        found |= Q(trace_id=term.lower())
    return queryset.filter(found)


class FailureInline(ReadOnlyMixin, StackedInline):
    model = Failure
    fields = readonly_fields = ("attempt", "at", "permanent", "error", "traceback_pre")
    extra = 0

    @admin.display(description="traceback")
    def traceback_pre(self, failure: Failure) -> str:
        return format_html("<pre>{}</pre>", failure.traceback)


MESSAGE_ID = re.compile(r"^\d{1,18}$")


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, ModelAdmin):
    # Fits a laptop's 1440 px beside the filters: the event's type under the worker's name, times
    # on two lines if need be. pending_url (core.console) sorts by "due" by its position.
    list_display = [
        "id", "worker_and_type", "tenant", "state", "attempts", "due", "handled", "error",
    ]  # fmt: skip
    list_filter = [WorkerFilter, "state", MessageTypeFilter, MessageSourceFilter]
    list_select_related = ["event", "tenant"]
    ordering = ["-id"]  # newest first: ids are taken as messages are written
    search_fields = ["=event__id"]  # the box; get_search_results says what it finds
    search_help_text = (
        "A message id, or its event's eventId, traceId or sourceId, exactly; filter by worker, "
        "state, event type and source."
    )
    show_full_result_count = False
    fields = readonly_fields = (
        "event", "worker", "tenant", "state", "attempts", "claims", "due_at", "lease_token",
        "created", "handled_at", "last_error", "dead_letter_link",
    )  # fmt: skip
    inlines = [FailureInline]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        # The messages of the events found as the list of events finds them, on
        # message_once_per_worker (event, worker); a message id on the key.
        term = search_term.strip()
        if not term:
            return queryset, False
        found = Q(event__in=search_events(Event.objects.all(), term).values("id"))
        if MESSAGE_ID.match(term):
            found |= Q(pk=int(term))
        return queryset.filter(found), False

    @admin.display(description="worker, event type", ordering="worker")
    def worker_and_type(self, message: Message) -> str:
        return under(message.worker, message.event.type)

    due = moment_column("due_at", "due at")
    handled = moment_column("handled_at", "handled at")

    @admin.display(description="last error")
    def error(self, message: Message) -> str:
        return clipped_cell(first_line(message.last_error, 500), 60)

    @admin.display(description="dead letter")
    def dead_letter_link(self, message: Message) -> str:
        letter = DeadLetter.objects.filter(message=message).only("pk").first()
        if letter is None:
            return "-"
        return link(reverse("admin:core_deadletter_change", args=[letter.pk]), str(letter.pk))


# --- Dead letters --------------------------------------------------------------------------------


class OpenFilter(admin.SimpleListFilter):
    """Open dead letters still need the operator; replayed ones are history."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "Open"), ("replayed", "Replayed")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter]
    ) -> QuerySet[DeadLetter]:
        if self.value() == "open":
            return queryset.filter(replayed_at__isnull=True)
        if self.value() == "replayed":
            return queryset.filter(replayed_at__isnull=False)
        return queryset


class DeadLetterChangeList(ChangeList):
    """Each listed dead letter with its subject, looked up for the whole page at once."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        letters = list(self.result_list)  # evaluated once, and kept by the queryset
        attach_subjects(letters)


def attach_subjects(letters: Sequence[DeadLetter]) -> None:
    found = subjects.subjects([letter.envelope for letter in letters])
    for letter, subject in zip(letters, found, strict=True):
        vars(letter)["subject"] = subject


def subject_of(letter: DeadLetter) -> Subject | None:
    if "subject" not in vars(letter):
        attach_subjects([letter])
    found: Subject | None = vars(letter)["subject"]
    return found


def original_event(letter: DeadLetter) -> tuple[str, str]:
    """The type and id of the event that started it: a command's subject's (a delivery's
    event), else the dead letter's own."""
    subject = subject_of(letter)
    if subject is not None and subject.event_id:
        return subject.event_type, subject.event_id
    return letter.event_type, str(letter.envelope.get("eventId", ""))


def event_url(event_id: str) -> str | None:
    found = parse_uuid(event_id)
    return reverse("admin:core_event_change", args=[found]) if found else None


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyMixin, ObjectActionsAdmin):
    # Fits a laptop's 1440 px beside the filters: the subject under its event, the tenant on
    # the page (and in the filters).
    list_display = [
        "worker",
        "event_and_subject",
        "died",
        "attempt_count",
        "last_error",
        "replayed",
    ]
    list_filter = [OpenFilter, WorkerFilter, DeadLetterTypeFilter, "tenant"]
    list_select_related = ["tenant", "message"]
    fieldsets = [
        ("What failed", {"fields": [
            "worker", "original_event", "subject_facts", "tenant", "created", "attempt_count",
            "reason", "status", "message",
        ]}),
        ("Envelope", {"fields": ["envelope_json"]}),
        ("Attempts", {"fields": ["attempts_html"]}),
    ]  # fmt: skip
    readonly_fields = fieldset_fields(fieldsets)
    actions = ["replay_selected"]
    object_actions = ["replay"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DeadLetterChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetter]:
        # Every attempt's traceback stays out of a list; the page loads it when shown.
        return super().get_queryset(request).defer("attempts")

    @admin.display(description="event")
    def original_event(self, letter: DeadLetter) -> str:
        """On the page: the event that started it, its type and its id."""
        event_type, event_id = original_event(letter)
        return format_html(
            '<a href="{}">{}</a> <span class="quiet">eventId {}</span>',
            event_url(event_id),
            event_type,
            event_id,
        )

    @admin.display(description="event, subject", ordering="event_type")
    def event_and_subject(self, letter: DeadLetter) -> str:
        """In the list: the event's type (its id in the tooltip), its subject under it."""
        subject = subject_of(letter)
        event_type, event_id = original_event(letter)
        event = format_html(
            '<a href="{}" title="eventId {}">{}</a>', event_url(event_id), event_id, event_type
        )
        if subject is None:
            return event
        return under(
            event,
            format_html(
                '<a class="clip" href="{}" title="{}: {}">{}</a>',
                subject.url,
                subject.kind,
                subject.label,
                truncated(subject.beside_event or subject.label, 80),
            ),
        )

    died = moment_column("created", "dead since")

    @admin.display(description="subject")
    def subject_facts(self, letter: DeadLetter) -> str:
        subject = subject_of(letter)
        if subject is None:
            return "The event itself (its data is in the envelope below)."
        return format_html(
            "{} {}<ul>{}</ul>",
            subject.kind,
            link(subject.url, subject.label),
            format_html_join(
                "", "<li>{}: {}</li>", ((f.name, link(f.url, f.text)) for f in subject.facts)
            ),
        )

    @admin.display(description="attempts", ordering="message__attempts")
    def attempt_count(self, letter: DeadLetter) -> int:
        return letter.message.attempts

    @admin.display(description="last error")
    def last_error(self, letter: DeadLetter) -> str:
        return clipped_cell(first_line(letter.reason, 500), 60)

    @admin.display(description="replayed", boolean=True)
    def replayed(self, letter: DeadLetter) -> bool:
        # Replayed reads "yes" (done with); an open letter reads "no", the one still waiting
        # for the operator.
        return not letter.is_open

    @admin.display(description="status")
    def status(self, letter: DeadLetter) -> str:
        if letter.is_open:
            return "Open: replay it once the cause is fixed."
        return f"Replayed at {format_moment(letter.replayed_at)} ({letter.replays} in all)"

    @admin.display(description="envelope")
    def envelope_json(self, letter: DeadLetter) -> str:
        return pretty_json(letter.envelope)

    @admin.display(description="attempts")
    def attempts_html(self, letter: DeadLetter) -> str:
        # Stored as ISO text (JSON); shown in the console's time format.
        attempts = [{**a, "at": parse_datetime(a["at"])} for a in letter.attempts]
        return render_to_string("admin/core/deadletter/attempts.html", {"attempts": attempts})

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Dead letters are otherwise read-only; replaying is the one change an operator makes
        # to them, so it is granted by the model's change permission.
        return bool(request.user.has_perm("core.change_deadletter"))

    # Replaying asks first, from the list and from the page: the preview says which messages
    # go back to which worker, and which were replayed already (replay.would_replay).

    def replay_preview(self, request: HttpRequest, letter: DeadLetter) -> Preview:
        return replay_preview([letter])

    @admin.action(description="Replay selected dead letters…", permissions=["replay"])
    def replay_selected(
        self, request: HttpRequest, queryset: QuerySet[DeadLetter]
    ) -> HttpResponse | None:
        # Listed first: under the "open" filter, the queryset would lose what was just replayed.
        letters = list(queryset.select_related("message", "tenant"))
        page = confirmed(self, request, letters, replay_preview(letters))
        if page is not None:
            return page
        replayed = replay.replay_all(letters)
        for letter in letters:
            if letter.id in replayed:
                self.log_change(request, letter, "Replayed")
        already = len(letters) - len(replayed)
        self.message_user(
            request,
            f"Replayed {len(replayed)}; {already} were already replayed",
            messages.SUCCESS,
        )
        return None

    @object_action(
        label="Replay",
        permission="replay",
        shown=lambda letter: letter.is_open,
        preview="replay_preview",
    )
    def replay(self, request: HttpRequest, letter: DeadLetter) -> Done:
        if not replay.replay(letter):
            return Done(f"{letter} was already replayed.", messages.WARNING)
        self.log_change(request, letter, "Replayed")
        return Done(f"Replayed {letter}: it goes back to {letter.worker} now.")

    def get_urls(self) -> list[URLPattern]:
        # The health page hangs here, beside the dead letters it links to: a ModelAdmin's own
        # URLs are how an app adds admin pages to the stock admin site.
        view = self.admin_site.admin_view
        return [path("health/", view(self.health_view), name="core_health"), *super().get_urls()]

    def health_view(self, request: HttpRequest) -> HttpResponse:
        report = health.report()
        context = {
            **self.admin_site.each_context(request),
            "title": "Worker health",
            "opts": self.opts,
            "report": report,
            "checked_at": parse_datetime(report["checkedAt"]),
            "clusters": [console.with_times(c, "lastHeartbeat") for c in report["clusters"]],
            "workers": [
                console.with_times(w, "lastSuccess", "clusterHeartbeat") for w in report["workers"]
            ],
        }
        return render(request, "admin/core/health.html", context)


def replay_preview(letters: Sequence[DeadLetter]) -> Preview:
    """What replaying these dead letters would do now (replay.would_replay), changing nothing:
    which go back to which worker, and which were replayed already."""
    attach_subjects([letter for letter in letters if "subject" not in vars(letter)])
    rows, going, already = [], 0, 0
    workers: dict[str, int] = {}
    for letter in letters:
        state = letter.message.state
        event_type, event_id = original_event(letter)
        subject = subject_of(letter)
        if replay.would_replay(state):
            going += 1
            workers[letter.worker] = workers.get(letter.worker, 0) + 1
            outcome = "Goes back to its worker, due now, its attempts counted from zero"
        else:
            already += 1
            outcome = f"Already replayed (its message is {state}): left as it is"
        rows.append(
            [
                Cell(str(letter.pk), reverse("admin:core_deadletter_change", args=[letter.pk])),
                Cell(f"{event_type} {event_id}", event_url(event_id)),
                Cell(subject.label if subject else "-", subject.url if subject else None),
                Cell(letter.worker),
                Cell(outcome),
            ]
        )
    to = ", ".join(f"{name} ({n})" for name, n in sorted(workers.items()))
    parts = [f"{going} of {len(letters)} would go back to {to}." if going else ""]
    if already:
        parts.append(f"{already} already replayed would be left as they are.")
    if not going:
        parts.append("Nothing would be replayed.")
    parts.append("Nothing has changed yet.")
    return Preview(
        title="Replay dead letters?" if len(letters) > 1 else "Replay this dead letter?",
        summary=" ".join(p for p in parts if p),
        columns=["Dead letter", "Event", "Subject", "Worker", "What would happen"],
        rows=rows,
        act=f"Yes, replay {going}" if going else "",
    )


# --- The task queue's tables (django-q2) -------------------------------------------------------
# django-q2's own lists, narrowed to fit a laptop's 1440 px beside their filters with the
# platform's list styles: a task's function under its name (the platform's tasks all run one
# of a few functions of core.runtime), long names and ids clipped and free to wrap, times in
# the one format. Importing django-q2's admin (above) registers its lists, and autodiscovery
# finds that module imported already: they are replaced here, keeping their actions and
# querysets.


def named_task(name: str | None, func: str | None) -> str:
    """A task by its name, clipped, with the function it runs under it, quieter."""
    return under(clipped_cell(name or "-", 60), clipped_cell(func or "-", 60))


def replace(model: type[Model], admin_class: type[admin.ModelAdmin[Any]]) -> None:
    if admin.site.is_registered(model):  # OrmQ: only where the ORM broker is configured
        admin.site.unregister(model)
        admin.site.register(model, admin_class)


class TaskListAdmin(q_admin.TaskAdmin):  # type: ignore[misc]  # django-q2 has no type hints
    list_display = ["task_cell", "group", "cluster", "started_cell", "stopped_cell", "time_taken"]
    list_display_links = ["task_cell"]
    change_list_template = "admin/core/change_list.html"

    @admin.display(description="task", ordering="name")
    def task_cell(self, task: Success) -> str:
        return named_task(task.name, task.func)

    started_cell = moment_column("started", "started")
    stopped_cell = moment_column("stopped", "stopped")


class FailedTaskListAdmin(q_admin.FailAdmin):  # type: ignore[misc]  # django-q2 has no type hints
    list_display = ["task_cell", "group", "cluster", "started_cell", "stopped_cell", "result_cell"]
    list_display_links = ["task_cell"]
    change_list_template = "admin/core/change_list.html"
    task_cell = TaskListAdmin.task_cell
    started_cell = TaskListAdmin.started_cell
    stopped_cell = TaskListAdmin.stopped_cell

    @admin.display(description="result")
    def result_cell(self, task: FailedTask) -> str:
        return clipped_cell(first_line(str(task.result or "-"), 200), 80)


class ScheduleListAdmin(q_admin.ScheduleAdmin):  # type: ignore[misc]  # django-q2 has no type hints
    list_display = [
        "id", "task_cell", "schedule", "repeats", "cluster", "next_run_cell", "get_last_run",
        "get_success",
    ]  # fmt: skip
    list_display_links = ["id", "task_cell"]
    change_list_template = "admin/core/change_list.html"

    @admin.display(description="name", ordering="name")
    def task_cell(self, schedule: Schedule) -> str:
        return named_task(schedule.name, schedule.func)

    @admin.display(description="schedule", ordering="schedule_type")
    def schedule(self, schedule: Schedule) -> str:
        if schedule.schedule_type == Schedule.MINUTES and schedule.minutes:
            return f"every {schedule.minutes} min"
        if schedule.schedule_type == Schedule.CRON and schedule.cron:
            return f"cron {schedule.cron}"
        return str(schedule.get_schedule_type_display())

    next_run_cell = moment_column("next_run", "next run")


class QueueListAdmin(q_admin.QueueAdmin):  # type: ignore[misc]  # django-q2 has no type hints
    list_display = ["id", "task_cell", "key", "group", "locked", "task_id_cell"]
    change_list_template = "admin/core/change_list.html"

    @admin.display(description="task")
    def task_cell(self, queued: OrmQ) -> str:
        return named_task(queued.name(), queued.func())

    locked = moment_column("lock", "locked until")

    @admin.display(description="task id")
    def task_id_cell(self, queued: OrmQ) -> str:
        return clipped_cell(queued.task_id(), 40)


replace(Success, TaskListAdmin)
replace(FailedTask, FailedTaskListAdmin)
replace(Schedule, ScheduleListAdmin)
replace(OrmQ, QueueListAdmin)
