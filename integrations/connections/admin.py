"""The console's connections and credentials.

A credential's secret is entered once, on its add form, and shown nowhere afterwards: the
field exists on the add form only (a password input, which never renders a value back, even
when the form comes back with errors), the versions inline lists metadata, and the secret
column is deferred from every query the pages make. "Rotate now" and "Roll back" are object
actions through the same services as the API; a credential whose operator supplies its
secrets has "Rotate to a new secret", whose form takes it.

A connection's page shows its credentials (metadata, each linked to its page), its latest runs
and its streams with their checkpoints (integrations.sync), and has "Sync now": an object
action through the same service as the API's POST .../connections/<id>/sync, which says so,
naming the running run, where the API answers 409.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from core.admin import first_line, moment_cell, moment_column, truncated, under
from core.admin_actions import Done, ObjectActionsAdmin, object_action
from core.formats import format_moment
from integrations.connections import credentials as services
from integrations.connections.models import (
    CredentialVersion,
    IntegrationConnection,
    IntegrationCredential,
)
from integrations.sync import handler as sync_handler
from integrations.sync import selectors as sync_selectors
from integrations.sync.admin import checkpoint_text
from integrations.sync.models import IntegrationRun

Method = IntegrationCredential.Method


class ConnectionForm(forms.ModelForm):
    base_url = forms.URLField(
        max_length=2000, required=False, assume_scheme="https", help_text="Empty: the provider's."
    )

    class Meta:
        model = IntegrationConnection
        fields = ["tenant", "provider", "name", "base_url", "config", "streams",
                  "cadence_seconds", "status", "status_reason"]  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # The registry and the outbound guard judge the provider, streams and base URL, as
        # they do for the API.
        # A stored one's credentials too (the change must not strand them): its id and
        # tenant, with the form's base URL and config.
        judged = IntegrationConnection(
            provider=str(data.get("provider") or self.instance.provider or ""),
            streams=data.get("streams") or [],
            base_url=data.get("base_url") or "",
            config=data.get("config") or {},
        )
        judged.pk = None if self.instance._state.adding else self.instance.pk
        if not self.instance._state.adding:
            judged.tenant_id = self.instance.tenant_id
        try:
            services.check_connection(judged)
        except ValidationError as exc:
            self.add_error(None, exc.messages)
        return data


LATEST_RUNS = 10


@admin.register(IntegrationConnection)
class IntegrationConnectionAdmin(ObjectActionsAdmin):
    list_display = ["name", "provider", "tenant", "status", "status_reason", "cadence_seconds",
                    "created"]  # fmt: skip
    list_filter = ["provider", "status"]
    search_fields = ["name", "provider", "base_url"]
    fields = ["tenant", "provider", "name", "base_url", "config", "streams", "cadence_seconds",
              "status", "status_reason", "created", "updated"]  # fmt: skip
    # A connection's page: its settings, then what it has and did (read-only panels).
    panels = [
        ("Credentials", {"fields": ["credentials_panel"]}),
        ("Latest runs", {"fields": ["runs_panel"]}),
        ("Streams", {"fields": ["streams_panel"]}),
    ]
    readonly_fields = ["created", "updated", "credentials_panel", "runs_panel", "streams_panel"]
    object_actions = ["sync_now"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        if obj is None:  # nothing to show yet
            return [(None, {"fields": [f for f in self.fields if f not in ("created", "updated")]})]
        return [(None, {"fields": self.fields}), *self.panels]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A connection's tenant and provider are what it is; a new one is another connection.
        return [*self.readonly_fields, *(["tenant", "provider"] if obj else [])]

    form = ConnectionForm

    @admin.display(description="credentials")
    def credentials_panel(self, connection: IntegrationConnection) -> str:
        # Metadata only: the versions (and their secrets) are on the credential's own page.
        found = IntegrationCredential.objects.filter(connection=connection).order_by("created")
        return render_to_string(
            "admin/connections/integrationconnection/credentials.html",
            {
                "credentials": [
                    (
                        reverse("admin:connections_integrationcredential_change", args=[c.pk]),
                        format_moment(c.rotated_at) if c.rotated_at else "-",
                        c,
                    )
                    for c in found
                ],
                "add_url": reverse("admin:connections_integrationcredential_add")
                + f"?connection={connection.pk}",
            },
        )

    @admin.display(description="latest runs")
    def runs_panel(self, connection: IntegrationConnection) -> str:
        runs = list(sync_selectors.runs(connection=connection)[:LATEST_RUNS])
        listing = reverse("admin:sync_integrationrun_changelist")
        return render_to_string(
            "admin/connections/integrationconnection/runs.html",
            {
                "runs": [
                    (
                        reverse("admin:sync_integrationrun_change", args=[r.pk]),
                        format_moment(r.started),
                        format_moment(r.finished) if r.finished else "-",
                        first_line(r.error, 120),
                        r,
                    )
                    for r in runs
                ],
                "limit": LATEST_RUNS,
                "all_url": f"{listing}?connection__id__exact={connection.pk}",
            },
        )

    @admin.display(description="streams")
    def streams_panel(self, connection: IntegrationConnection) -> str:
        streams = sync_selectors.streams(connection=connection)
        records = reverse("admin:sync_syncrecord_changelist")
        of_connection = {"connection__id__exact": connection.pk}
        return render_to_string(
            "admin/connections/integrationconnection/streams.html",
            {
                "streams": [
                    (
                        reverse("admin:sync_syncstream_change", args=[s.pk]),
                        checkpoint_text(s.checkpoint),
                        format_moment(s.last_synced) if s.last_synced else "-",
                        f"{records}?{urlencode({**of_connection, 'stream': s.name})}",
                        s,
                    )
                    for s in streams
                ],
            },
        )

    # The operator's write: "Sync now", through the same service as the API's POST .../sync.

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("connections.change_integrationconnection"))

    @object_action(
        label="Sync now",
        permission="sync",
        shown=lambda connection: connection.status == IntegrationConnection.Status.ACTIVE,
        help="Start a run of every stream from its checkpoint now.",
    )
    def sync_now(self, request: HttpRequest, connection: IntegrationConnection) -> Done:
        try:
            run = sync_handler.start_run(
                connection=connection, trigger=IntegrationRun.Trigger.MANUAL
            )
        except sync_handler.Busy as exc:
            # What the API answers with 409: the run to follow instead.
            return Done(f"Not started: {exc}", messages.WARNING)
        except sync_handler.NotSyncable as exc:
            return Done(f"Not started: {exc}", messages.WARNING)
        self.log_change(request, connection, f"Sync now: run {run.pk}")
        return Done(f"Started run {run.pk}; its pages are read by IntegrationSyncWorker.")


class SecretJsonField(forms.CharField):
    """A secret as JSON, entered once; its input never shows a value back."""

    widget = forms.PasswordInput(render_value=False)

    def clean(self, value: Any) -> dict[str, Any] | None:
        text = super().clean(value)
        if not text:
            return None
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValidationError('Not JSON: write it as {"token": "..."}.') from None
        if not isinstance(parsed, dict) or not parsed:
            raise ValidationError("A secret is a non-empty JSON object.")
        return parsed


class CredentialAddForm(forms.ModelForm):
    secret = SecretJsonField(
        help_text='JSON, e.g. {"token": "..."}, {"email": "...", "api_token": "..."} or an '
        "OAuth 2.0 access and refresh token. Stored encrypted and never shown again."
    )

    class Meta:
        model = IntegrationCredential
        fields = ["connection", "name", "kind", "method", "rotate_every_days", "grace_seconds"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # The provider's judgement of kind, method and secret: the API's, from the same service.
        connection, kind, method = data.get("connection"), data.get("kind"), data.get("method")
        if connection is not None and kind and method:
            try:
                services.check_credential(
                    connection=connection, kind=kind, method=method, secret=data.get("secret")
                )
            except ValidationError as exc:
                _add_errors(self, exc)
        return data


class CredentialChangeForm(forms.ModelForm):
    class Meta:
        model = IntegrationCredential
        fields = ["name", "rotate_every_days", "grace_seconds"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            services.check_policy(
                credential=self.instance, rotate_every_days=data.get("rotate_every_days")
            )
        except ValidationError as exc:
            _add_errors(self, exc)
        return data


def _add_errors(form: forms.ModelForm, exc: ValidationError) -> None:
    """A service's refusal on the form's field it names (the form's top otherwise)."""
    for name, errors in exc.message_dict.items() if hasattr(exc, "error_dict") else []:
        form.add_error(name if name in form.fields else None, errors)
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)


class NewSecretForm(forms.Form):
    secret = SecretJsonField(help_text="The new secret, as JSON. It is not shown again.")


class VersionInline(admin.TabularInline):
    model = CredentialVersion
    extra = 0
    can_delete = False
    # Metadata only (the secret is deferred, and in no column); compact, to fit the page.
    fields = ("rotation_token", "stage", "step", "source", "key_fingerprint", "vendor_key",
              "error", "created_at", "promoted_at", "expires_at")  # fmt: skip
    readonly_fields = fields
    ordering = ["-created"]

    @admin.display(description="vendor key")
    def vendor_key(self, version: CredentialVersion) -> str:
        if not version.vendor_key_id:
            return "-"
        revoked = " (revoked)" if version.vendor_revoked_at else ""
        return truncated(version.vendor_key_id, 24) + revoked

    @admin.display(description="last error")
    def error(self, version: CredentialVersion) -> str:
        return truncated(version.last_error, 60) if version.last_error else "-"

    created_at = moment_column("created", "created", sortable=False)
    promoted_at = moment_column("promoted", "promoted", sortable=False)
    expires_at = moment_column("expires", "works until", sortable=False)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CredentialVersion]:
        return super().get_queryset(request).defer("secret")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _has_previous(credential: IntegrationCredential) -> bool:
    return credential.versions.filter(stage=CredentialVersion.Stage.PREVIOUS).exists()


CREDENTIAL_FIELDS = (
    "connection", "name", "kind", "method", "rotate_every_days", "grace_seconds", "rotated_at",
    "next_rotation_at", "created", "updated",
)  # fmt: skip


@admin.register(IntegrationCredential)
class IntegrationCredentialAdmin(ObjectActionsAdmin):
    # At 1440 px beside the filters, in the platform's list styles: how its secrets are made
    # under its kind, the rotation policy with the next rotation in one cell, times free to
    # wrap between date and time.
    list_display = ["__str__", "connection_cell", "kind_cell", "rotation", "rotated_cell"]
    change_list_template = "admin/core/change_list.html"
    list_filter = ["kind", "method"]
    list_select_related = ["connection"]
    search_fields = ["name", "connection__name"]
    fields = CREDENTIAL_FIELDS
    readonly_fields = ["connection", "kind", "method", "rotated_at", "next_rotation_at",
                       "created", "updated"]  # fmt: skip
    inlines = [VersionInline]
    object_actions = ["rotate_now", "rotate_to_secret", "roll_back"]

    @admin.display(description="connection", ordering="connection__name")
    def connection_cell(self, credential: IntegrationCredential) -> str:
        return str(credential.connection)

    @admin.display(description="kind", ordering="kind")
    def kind_cell(self, credential: IntegrationCredential) -> str:
        return under(credential.get_kind_display(), credential.get_method_display())

    @admin.display(description="rotation", ordering="next_rotation_at")
    def rotation(self, credential: IntegrationCredential) -> str:
        """The policy, and under it when the schedule rotates it next."""
        days = credential.rotate_every_days
        if days is None:
            return "on request"
        policy = f"every {days} day{'s' if days != 1 else ''}"
        if credential.next_rotation_at is None:
            return policy
        return under(policy, format_html("next {}", moment_cell(credential.next_rotation_at)))

    rotated_cell = moment_column("rotated_at", "rotated")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        kwargs["form"] = CredentialAddForm if obj is None else CredentialChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return (*CredentialAddForm.Meta.fields, "secret")
        return CREDENTIAL_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(self.readonly_fields) if obj is not None else []

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return list(self.inlines) if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            services.set_policy(
                credential=obj,
                rotate_every_days=form.cleaned_data.get("rotate_every_days"),
                grace_seconds=form.cleaned_data.get("grace_seconds"),
            )
            IntegrationCredential.objects.filter(pk=obj.pk).update(name=obj.name)
            return
        data = form.cleaned_data
        created = services.create_credential(
            connection=data["connection"],
            secret=data["secret"],
            kind=data["kind"],
            method=data["method"],
            name=data["name"],
            rotate_every_days=data["rotate_every_days"],
            grace_seconds=data["grace_seconds"],
        )
        obj.pk = created.pk
        obj.tenant_id, obj.created = created.tenant_id, created.created

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("connections.change_integrationcredential"))

    def _rotate(
        self, request: HttpRequest, credential: IntegrationCredential, secret: Any = None
    ) -> Done:
        token = f"admin-{uuid.uuid4().hex[:16]}"
        try:
            version, _ = services.request_rotation(
                credential=credential, token=token, secret=secret
            )
        except services.Conflict as exc:
            return Done(str(exc), messages.WARNING)
        except ValidationError as exc:
            return Done(" ".join(exc.messages), messages.ERROR)
        self.log_change(request, credential, f"Rotation {version.rotation_token} requested")
        return Done(
            f"Rotation {version.rotation_token} started: the new version is pending until the "
            "vendor has it and it passes verification; the current one stays current until then."
        )

    @object_action(
        label="Rotate now",
        permission="rotate",
        shown=lambda credential: credential.method != Method.OPERATOR,
        help="Mint a new secret at the vendor, verify it and promote it.",
    )
    def rotate_now(self, request: HttpRequest, credential: IntegrationCredential) -> Done:
        return self._rotate(request, credential)

    @object_action(
        label="Rotate to a new secret",
        permission="rotate",
        shown=lambda credential: credential.method == Method.OPERATOR,
        help="Verify a secret you supply and promote it.",
        form=NewSecretForm,
    )
    def rotate_to_secret(
        self, request: HttpRequest, credential: IntegrationCredential, data: dict[str, Any]
    ) -> Done:
        return self._rotate(request, credential, data["secret"])

    @object_action(
        label="Roll back",
        permission="rotate",
        shown=_has_previous,
        help="Make the previous version current again; the current one becomes previous.",
    )
    def roll_back(self, request: HttpRequest, credential: IntegrationCredential) -> Done:
        try:
            restored = services.rollback(credential=credential)
        except services.Conflict as exc:
            return Done(str(exc), messages.WARNING)
        self.log_change(request, credential, f"Rolled back to {restored.rotation_token}")
        return Done(f"Rolled back: {restored.rotation_token} is current again.")
