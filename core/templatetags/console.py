"""The landing page in the admin index (templates/admin/index.html), the way the stock index
loads its recent actions (`{% get_admin_log %}`): the index view is the admin site's own, so
the page's sections (core.console.SECTIONS) come from a tag rather than from a view's context."""

from __future__ import annotations

from typing import Any

from django import template

from core import console
from core.formats import format_count, format_duration

register = template.Library()


@register.inclusion_tag("admin/core/landing.html", takes_context=True)
def landing_page(context: template.Context) -> dict[str, Any]:
    # Each section is shown to whoever may see its app's models; someone who may see none of
    # them gets the stock index.
    return {"sections": console.landing(context["request"])}


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as the console writes a wait or an age: "3 min 12 s"."""
    return format_duration(seconds)


@register.filter
def count(n: int | None) -> str:
    return format_count(n)
