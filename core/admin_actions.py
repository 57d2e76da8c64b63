"""Object actions: a button on an object's change page that acts on that one object.

The one way the console's pages change something (replay a dead letter, redeliver a delivery):
the button is a POST form (CSRF-protected) among the page's object tools, drawn by
templates/admin/change_form.html for every change page; the view it posts to checks the
permission, finds the object (404 otherwise), acts, says what happened in a message and goes
back to the page. A ModelAdmin declares them like Django's list actions:

    class DeadLetterAdmin(ObjectActionsAdmin):
        object_actions = ["replay"]

        def has_replay_permission(self, request) -> bool: ...

        @object_action(label="Replay", permission="replay", shown=lambda letter: letter.is_open)
        def replay(self, request, letter) -> Done:
            ...
            return Done(f"Replayed {letter}.")

which adds the URL `<pk>/replay/` named `admin:core_deadletter_replay`, and the button on the
pages of open dead letters for whoever has the permission. The action itself goes through the
same service as the API and the commands, and logs the change (ModelAdmin.log_change).

An action that needs the operator's input names a `form` (a Django form class): the page then
shows that form (templates/admin/change_form.html, after the change form) instead of a button,
it POSTs to the action's URL, and the method is called as `(self, request, obj, data)` with the
form's cleaned data; a form that does not validate comes back on the action's own page with its
errors beside the fields (a GET of the URL shows it empty):

    @object_action(label="Comment", permission="comment", form=CommentForm)
    def comment(self, request, incident, data) -> Done:
        services.comment(incident=incident, actor=..., text=data["text"])
        return Done(f"Commented on incident #{incident.number}.")

An action that an operator should see the effect of before it happens names a `preview`: a
method `(self, request, obj) -> Preview` that changes nothing and says what the action would do.
Its button is then a link to the same URL, whose GET shows the preview on a confirmation page
(templates/admin/confirm_action.html) with the button that POSTs. A list action does the same
with `confirmed(...)`, the way Django's "Delete selected" asks first:

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay_selected(self, request, queryset):
        letters = list(queryset)
        if (page := confirmed(self, request, letters, self.replay_preview(letters))) is not None:
            return page  # the dry run: nothing changed yet
        ...  # the POST from that page: act
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

if TYPE_CHECKING:  # django-stubs' ModelAdmin is generic; Django's own is not subscriptable
    ModelAdmin = admin.ModelAdmin[Any]
else:
    ModelAdmin = admin.ModelAdmin


@dataclass(frozen=True)
class Done:
    """What an object action says afterwards, as a message on the page it returns to.

    `page`, when given, answers the POST instead of the redirect back: for what must be shown
    once and be in no URL, message or session (a new signing secret)."""

    message: str
    level: int = messages.SUCCESS
    page: HttpResponse | None = None


@dataclass(frozen=True)
class Cell:
    """A cell of a preview's table: text, and where it links to."""

    text: str
    url: str | None = None


@dataclass(frozen=True)
class Preview:
    """What an action would do, shown before it is done (a dry run: nothing has changed).

    `rows` are the objects concerned, with what would happen to each, under `columns`; `act` is
    the label of the button that does it, or empty when nothing would happen (then the page
    offers only the way back)."""

    title: str
    summary: str
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[Cell]] = ()
    act: str = ""


@dataclass(frozen=True)
class ObjectAction:
    name: str
    label: str
    permission: str
    shown: Callable[[Any], bool] | None
    help: str
    preview: str | None = None  # the name of its preview method, if it asks first
    form: type[forms.Form] | None = None  # the input it asks for, if any


Method = TypeVar("Method", bound=Callable[..., Done])


def object_action(
    *,
    label: str,
    permission: str,
    shown: Callable[[Any], bool] | None = None,
    help: str = "",
    preview: str | None = None,
    form: type[forms.Form] | None = None,
) -> Callable[[Method], Method]:
    """Declares a ModelAdmin method `(self, request, obj) -> Done` an object action: `label` on
    its button, granted by the ModelAdmin's `has_<permission>_permission(request)`, and its
    button shown only for objects `shown` accepts (all by default); `help` is its tooltip.
    With `preview`, the name of a method `(self, request, obj) -> Preview`, the button leads to
    a confirmation page showing that preview first; with `form`, the method takes the form's
    cleaned data as a fourth argument (see the module docstring)."""

    def decorate(method: Method) -> Method:
        vars(method)[_ATTRIBUTE] = ObjectAction(
            name=method.__name__,
            label=label,
            permission=permission,
            shown=shown,
            help=help,
            preview=preview,
            form=form,
        )
        return method

    return decorate


CONFIRM_TEMPLATE = "admin/confirm_action.html"


def confirmed(
    model_admin: ModelAdmin, request: HttpRequest, objects: Sequence[Model], preview: Preview
) -> TemplateResponse | None:
    """For a list action: None once the operator has confirmed (the POST from the
    confirmation page), else that page, showing `preview` of the selected `objects` with a
    button that posts the same action for them again, confirmed."""
    if request.POST.get("post") == "yes":
        return None
    opts = model_admin.opts
    context = {
        **model_admin.admin_site.each_context(request),
        "title": preview.title,
        "opts": opts,
        "preview": preview,
        "hidden": [
            ("action", request.POST.get("action", "")),
            ("post", "yes"),
            *((helpers.ACTION_CHECKBOX_NAME, str(obj.pk)) for obj in objects),
        ],
        "back": reverse(
            f"admin:{opts.app_label}_{opts.model_name}_changelist",
            current_app=model_admin.admin_site.name,
        ),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


_ATTRIBUTE = "object_action"


class ObjectActionsAdmin(ModelAdmin):
    """A ModelAdmin with object actions (see the module docstring), named in `object_actions`."""

    object_actions: tuple[str, ...] | list[str] = ()

    def _object_action(self, name: str) -> ObjectAction:
        action = vars(getattr(type(self), name)).get(_ATTRIBUTE)
        if not isinstance(action, ObjectAction):
            raise TypeError(f"{type(self).__name__}.{name} is not an @object_action")
        return action

    def _url_name(self, name: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{name}"

    def has_object_action_permission(self, request: HttpRequest, name: str) -> bool:
        permission = self._object_action(name).permission
        return bool(getattr(self, f"has_{permission}_permission")(request))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        own: list[URLPattern] = [
            path(
                f"<path:object_id>/{name}/",
                view(partial(self.object_action_view, name=name)),
                name=self._url_name(name),
            )
            for name in self.object_actions
        ]
        return [*own, *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Model | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context["object_actions"] = self.object_action_buttons(request, obj)
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def object_action_buttons(self, request: HttpRequest, obj: Model) -> list[dict[str, Any]]:
        """The buttons this user sees on `obj`'s page: label, URL and tooltip; an action with a
        form has it (unbound) as "form", drawn on the page instead of a button."""
        buttons = []
        for name in self.object_actions:
            action = self._object_action(name)
            if action.shown is not None and not action.shown(obj):
                continue
            if not self.has_object_action_permission(request, name):
                continue
            url = reverse(
                f"admin:{self._url_name(name)}", args=[obj.pk], current_app=self.admin_site.name
            )
            buttons.append(
                {
                    "name": name,
                    "label": action.label,
                    "url": url,
                    "help": action.help,
                    "asks_first": "yes" if action.preview else "",
                    "form": None if action.form is None else self._action_form(action),
                }
            )
        return buttons

    @staticmethod
    def _action_form(action: ObjectAction, data: Any = None) -> forms.Form:
        if action.form is None:
            raise TypeError(f"object action {action.name} has no form")
        # Its own ids (id_<action>_<field>): the page's change form may have a field so named.
        return action.form(data, auto_id=f"id_{action.name}_%s")

    def object_action_view(
        self, request: HttpRequest, object_id: str, *, name: str
    ) -> HttpResponse:
        action = self._object_action(name)
        # A GET shows the preview (or the empty form) and changes nothing; only a POST acts.
        allowed = ["GET", "POST"] if action.preview or action.form else ["POST"]
        if request.method not in allowed:
            return HttpResponseNotAllowed(allowed)
        if not self.has_object_action_permission(request, name):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404
        if request.method == "GET" and action.preview:
            return self._confirmation(request, obj, getattr(self, action.preview)(request, obj))
        if action.form is not None:
            form = self._action_form(action, request.POST if request.method == "POST" else None)
            if not form.is_valid():  # a GET, or input to correct: the form on its own page
                return self._confirmation(
                    request,
                    obj,
                    Preview(title=action.label, summary=action.help, act=action.label),
                    form=form,
                )
            done: Done = getattr(self, name)(request, obj, form.cleaned_data)
        else:
            done = getattr(self, name)(request, obj)
        self.message_user(request, done.message, done.level)
        if done.page is not None:
            return done.page
        return HttpResponseRedirect(
            reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=[obj.pk],
                current_app=self.admin_site.name,
            )
        )

    def _confirmation(
        self, request: HttpRequest, obj: Model, preview: Preview, *, form: forms.Form | None = None
    ) -> HttpResponse:
        """The object action's confirmation page: its preview, and the button that POSTs; or
        its form (with the errors of what was posted), and the button that POSTs it."""
        back = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[obj.pk],
            current_app=self.admin_site.name,
        )
        context = {
            **self.admin_site.each_context(request),
            "title": preview.title,
            "opts": self.opts,
            "object": obj,
            "object_url": back,
            "preview": preview,
            "form": form,
            "hidden": [],
            "back": back,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)
