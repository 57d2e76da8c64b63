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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

if TYPE_CHECKING:  # django-stubs' ModelAdmin is generic; Django's own is not subscriptable
    ModelAdmin = admin.ModelAdmin[Any]
else:
    ModelAdmin = admin.ModelAdmin


@dataclass(frozen=True)
class Done:
    """What an object action says afterwards, as a message on the page it returns to."""

    message: str
    level: int = messages.SUCCESS


@dataclass(frozen=True)
class ObjectAction:
    name: str
    label: str
    permission: str
    shown: Callable[[Any], bool] | None
    help: str


Method = TypeVar("Method", bound=Callable[..., Done])


def object_action(
    *, label: str, permission: str, shown: Callable[[Any], bool] | None = None, help: str = ""
) -> Callable[[Method], Method]:
    """Declares a ModelAdmin method `(self, request, obj) -> Done` an object action: `label` on
    its button, granted by the ModelAdmin's `has_<permission>_permission(request)`, and its
    button shown only for objects `shown` accepts (all by default); `help` is its tooltip."""

    def decorate(method: Method) -> Method:
        vars(method)[_ATTRIBUTE] = ObjectAction(
            name=method.__name__, label=label, permission=permission, shown=shown, help=help
        )
        return method

    return decorate


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
                view(require_POST(partial(self.object_action_view, name=name))),
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

    def object_action_buttons(self, request: HttpRequest, obj: Model) -> list[dict[str, str]]:
        """The buttons this user sees on `obj`'s page: label, URL and tooltip."""
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
            buttons.append({"name": name, "label": action.label, "url": url, "help": action.help})
        return buttons

    def object_action_view(
        self, request: HttpRequest, object_id: str, *, name: str
    ) -> HttpResponse:
        if not self.has_object_action_permission(request, name):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404
        done: Done = getattr(self, name)(request, obj)
        self.message_user(request, done.message, done.level)
        return HttpResponseRedirect(
            reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=[obj.pk],
                current_app=self.admin_site.name,
            )
        )
