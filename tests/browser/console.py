"""The console as an operator sees it: a Playwright page on the web tier, with the few moves
every flow makes (open a page, follow a link, press a button, run a list action, read the
messages), each checking what every console page owes a laptop at 1440 px: no horizontal
scrollbar, on the page or in a list's table.

Tests say what a person sees and does (URLs, visible text, roles), never which module draws
it, so that a page keeps its test when its code moves."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Locator, Page, Response, expect

VIEWPORT = {"width": 1440, "height": 900}  # a laptop
PASSWORD = "a-console-password-for-tests"

# Console pages that scroll sideways at 1440 px today. The check reports them and fails on any
# other page, so a page made to fit leaves this set (the run's summary says which now fit) and
# stays fitting. None today.
WIDE_PAGES: frozenset[str] = frozenset()
# List pages whose table is wider than its box at 1440 px today, by page kind; the same
# bargain. The admin lets a wide change list scroll inside its own box (#changelist .results),
# which leaves the page itself narrow: an operator would miss the last columns. None today.
WIDE_LISTS: frozenset[str] = frozenset()

PAGE, LIST = "page", "list"  # what a Width measures: the document, or a change list's table box
# A list page's table box, measured where there is one: [scrollWidth, clientWidth], or null.
LIST_BOX = """(() => {
  const box = document.querySelector("#changelist .results");
  return box && [box.scrollWidth, box.clientWidth];
})()"""

_ID = re.compile(
    r"^(\d+|[0-9a-f]{16,32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


def page_kind(url: str) -> str:
    """A page's path with its object ids as <id>: /admin/core/deadletter/<id>/change/."""
    parts = urlsplit(url).path.split("/")
    return "/".join("<id>" if _ID.match(part) else part for part in parts)


@dataclass(frozen=True)
class Width:
    kind: str
    url: str
    scroll: int
    client: int
    of: str = PAGE  # PAGE or LIST

    @property
    def fits(self) -> bool:
        return self.scroll <= self.client

    @property
    def wide(self) -> frozenset[str]:
        """The kinds allowed to be wide today for what this measures."""
        return WIDE_LISTS if self.of == LIST else WIDE_PAGES

    def problem(self) -> str:
        if self.of == LIST:
            return (
                f"{self.kind}: its list's table is {self.scroll} px wide in a {self.client} px box "
                f"at {VIEWPORT['width']} px (it scrolls inside #changelist .results)"
            )
        return (
            f"{self.kind} scrolls horizontally at {VIEWPORT['width']} px: scrollWidth "
            f"{self.scroll} > clientWidth {self.client}"
        )


@dataclass
class Layouts:
    """Every console page the browser tests visited, by kind, with its widest measurement; and
    every list page's table box, likewise."""

    seen: dict[str, Width] = field(default_factory=dict)
    lists: dict[str, Width] = field(default_factory=dict)

    def record(self, width: Width) -> None:
        seen = self.lists if width.of == LIST else self.seen
        known = seen.get(width.kind)
        if known is None or width.scroll - width.client > known.scroll - known.client:
            seen[width.kind] = width

    def summary(self) -> list[str]:
        lines = []
        if self.seen:
            lines += self._part(self.seen, "console pages visited", "scroll horizontally", PAGE)
        if self.lists:
            lines += self._part(self.lists, "list tables seen", "are wider than their box", LIST)
        return lines

    @staticmethod
    def _part(seen: dict[str, Width], visited: str, wide_words: str, of: str) -> list[str]:
        wide = [w for w in seen.values() if not w.fits]
        allowed, name = (WIDE_LISTS, "WIDE_LISTS") if of == LIST else (WIDE_PAGES, "WIDE_PAGES")
        fitting_now = sorted(k for k, w in seen.items() if w.fits and k in allowed)
        lines = [
            f"{len(seen)} {visited} at {VIEWPORT['width']} px; "
            f"{len(wide)} {wide_words}" + (":" if wide else ".")
        ]
        lines += [
            f"  {w.kind}  (scrollWidth {w.scroll} > clientWidth {w.client}; {w.url})"
            for w in sorted(wide, key=lambda w: w.kind)
        ]
        if fitting_now:
            lines.append(f"These now fit: take them out of {name} (tests/browser/console.py):")
            lines += [f"  {kind}" for kind in fitting_now]
        return lines


@dataclass
class Console:
    page: Page
    base: str
    layouts: Layouts
    errors: list[str] = field(default_factory=list)  # uncaught script errors of the pages

    def __post_init__(self) -> None:
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    # --- Moves --------------------------------------------------------------------------

    def open(self, path: str) -> Response:
        """Go to a console path (or a full URL) and expect it to answer."""
        url = path if path.startswith("http") else self.base + path
        response = self.page.goto(url)
        return self._arrived(response)

    def follow(self, target: Locator | str) -> Response:
        """Click a link (a locator, or the visible name of a link) and land on its page."""
        if isinstance(target, str):
            target = self.page.get_by_role("link", name=target, exact=True)
        return self._through(target)

    def follow_result(self, name: str | None = None) -> Response:
        """On a list page: open the listed object whose link reads so, or the first one."""
        links = self.page.locator("#result_list tbody").get_by_role("link")
        return self._through(links.first if name is None else links.filter(has_text=name).first)

    def press(self, name: str) -> Response:
        """Press the button of that name, which submits a form, and land where it leads."""
        return self._through(self.page.get_by_role("button", name=name, exact=True))

    def run_action(self, action: str, *rows: str) -> Response:
        """On a list page: tick the rows whose first link reads so, choose the action from the
        action menu by its label, and press Go."""
        for row in rows:
            self.page.get_by_role("row").filter(
                has=self.page.get_by_role("link", name=row, exact=True)
            ).get_by_role("checkbox").check()
        self.page.get_by_role("combobox", name="Action").select_option(label=action)
        return self.press("Go")

    def log_in(self, username: str, password: str = PASSWORD) -> Response:
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        return self.press("Log in")

    # --- What the page says --------------------------------------------------------------

    @property
    def path(self) -> str:
        return urlsplit(self.page.url).path

    def messages(self) -> list[str]:
        """The admin's messages after an action, as shown."""
        return [text.strip() for text in self.page.locator("ul.messagelist li").all_inner_texts()]

    def expect_message(self, text: str) -> None:
        expect(self.page.locator("ul.messagelist")).to_contain_text(text)

    def row(self, text: str) -> Locator:
        """The table row holding that text."""
        return self.page.get_by_role("row").filter(has_text=text)

    # --- Checks of every page ------------------------------------------------------------

    def _through(self, target: Locator) -> Response:
        with self.page.expect_navigation() as navigation:
            target.click()
        return self._arrived(navigation.value)

    def _arrived(self, response: Response | None) -> Response:
        assert response is not None, f"no page loaded at {self.page.url}"
        assert response.ok, f"{response.status} at {response.url}"
        assert not self.errors, f"script errors on {self.page.url}: {self.errors}"
        self.check_width()
        return response

    def check_width(self) -> Width:
        """The page fits the viewport and, on a list page, the list's table fits its box. Both
        are recorded for the run's summary before either is judged."""
        kind, url = page_kind(self.page.url), self.page.url
        scroll, client = self.page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        widths = [Width(kind, url, scroll, client)]
        box = self.page.evaluate(LIST_BOX)
        if box is not None:
            widths.append(Width(kind, url, *box, of=LIST))
        for width in widths:
            self.layouts.record(width)
        for width in widths:
            if width.kind not in width.wide:
                assert width.fits, width.problem()
        return widths[0]
