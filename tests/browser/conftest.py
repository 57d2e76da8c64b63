"""The console in a real browser: Playwright driving Debian's Chromium against the web tier as
production runs it (gunicorn with gunicorn.conf.py, static files collected and served by
WhiteNoise, DEBUG off) on the test database, and a real qcluster where a flow needs workers.

One browser for the package's tests, a fresh page (and cookie jar) per test. A test that fails
leaves a screenshot and the page's HTML in var/browser-failures/, named in its report.
Where /usr/bin/chromium is missing the tests are skipped, saying how to run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import Browser, Page, sync_playwright

from core import services
from tests.browser.console import PASSWORD, VIEWPORT, Console, Layouts
from tests.core.test_processes import qcluster
from tests.integrations.receiver import Receiver
from tests.webtier import web_tier

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FAILURES = ROOT / "var" / "browser-failures"
HOW_TO_RUN = (
    f"browser tests need Debian's Chromium at {CHROMIUM}: `apt-get install chromium` "
    "(.ci/run does), then `make test`"
)
# The machine's network is closed: without these Chromium tries its background connections
# (updates, sync, QUIC probes) and waits on them.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's sync API keeps an event loop running in this thread, so Django would take every
# ORM call of the tests (and pytest-django's flush) for one made from async code. It is not:
# allowed while the browser runs, and never passed to the platform's processes. Those run the
# catalog's workers only, as the console shows them to an operator.
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
CHILD_ENV = {ASYNC_UNSAFE: "", "WORKER_MODULES": ""}
# Subscriptions to a receiver on loopback are created through the API of this web tier.
WEB_ENV = {**CHILD_ENV, "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "WEBHOOK_REQUIRE_HTTPS": "0"}
LAYOUTS = pytest.StashKey[Layouts]()
SERVER_LOGS = pytest.StashKey[list[Path]]()  # gunicorn's, and the clusters' of the test


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        # Committed, for the other processes; and the database flushed back after each test
        # to the same rows with the same ids, which gunicorn keeps caching (content types).
        item.add_marker(pytest.mark.django_db(transaction=True, reset_sequences=True))
        if not CHROMIUM.exists():
            item.add_marker(pytest.mark.skip(reason=HOW_TO_RUN))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    page = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if report.failed and report.when in ("setup", "call") and page and not page.is_closed():
        report.sections.append(("browser failure", save_failure(page, item.nodeid)))
        for log in item.config.stash.get(SERVER_LOGS, []):
            if log.exists():  # a 500's traceback is there, not in the page
                report.sections.append((f"end of {log.name}", log.read_text()[-4000:]))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    layouts = config.stash.get(LAYOUTS, None)
    lines = layouts.summary() if layouts else []
    if lines:
        terminalreporter.section("console layout at 1440 px")
        for line in lines:
            terminalreporter.write_line(line)


def save_failure(page: Page, nodeid: str) -> str:
    FAILURES.mkdir(parents=True, exist_ok=True)
    stem = FAILURES / re.sub(r"[^\w.-]+", "_", nodeid.split("::", 1)[-1])
    screenshot, html = stem.with_suffix(".png"), stem.with_suffix(".html")
    try:
        page.screenshot(path=screenshot, full_page=True)
        html.write_text(page.content())
    except Exception as exc:  # the page may be what broke; the report says so
        return f"could not save the page at {page.url}: {exc}"
    return f"page {page.url}\nscreenshot {screenshot}\nhtml {html}"


# --- The platform ------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def static_files() -> None:
    """Collected as the Docker image does at build time: with DEBUG off WhiteNoise serves
    STATIC_ROOT only, so the admin's CSS and scripts are there or missing, as in production."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **CHILD_ENV}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


@pytest.fixture(scope="package")
def web(
    django_db_setup, django_db_blocker, static_files, tmp_path_factory, pytestconfig
) -> Iterator[str]:
    """gunicorn on the test database for the package's tests; its base URL.

    A long-lived process caches content type ids, which a flush changes: emptied as each test
    leaves it (reset_sequences, see above) before gunicorn starts, the database has the same
    ids in every test."""
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, reset_sequences=True, verbosity=0)
    folder = tmp_path_factory.mktemp("web")
    pytestconfig.stash[SERVER_LOGS] = [folder / "gunicorn.log"]
    with web_tier(folder, **WEB_ENV) as base:
        yield base


@pytest.fixture
def cluster(tmp_path, pytestconfig) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a real qcluster on the test database: cluster(SETTING="value", ...). Stopped (it
    drains first) when the test ends."""
    started: list[subprocess.Popen] = []

    def start(**env: str) -> subprocess.Popen:
        process = qcluster(tmp_path, **CHILD_ENV, **env)
        started.append(process)
        return process

    logs = pytestconfig.stash.get(SERVER_LOGS, [])
    pytestconfig.stash[SERVER_LOGS] = [*logs, tmp_path / "cluster.log"]
    yield start
    pytestconfig.stash[SERVER_LOGS] = logs
    for process in started:
        os.kill(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Api:
    """The platform's HTTP API as a tenant's client calls it, on the web tier under test."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def post(self, path: str, body: dict, *, expect: int = 200) -> dict:
        response = self.session.post(self.base + path, json=body, timeout=30)
        assert response.status_code == expect, response.text
        return response.json()


@pytest.fixture
def api(web, tenant) -> Iterator[Api]:
    """The API as the `acme` tenant: api.post("/v1/traces", {...})."""
    api = Api(web, services.issue_api_key(tenant=tenant))
    yield api
    api.session.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A subscriber's endpoint on loopback (tests/integrations/receiver.py)."""
    receiver = Receiver()
    yield receiver
    receiver.close()


# --- The browser --------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser(pytestconfig) -> Iterator[Browser]:
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    pytestconfig.stash.setdefault(LAYOUTS, Layouts())
    try:
        with sync_playwright() as playwright:
            # Never Playwright's own download: Debian's build, as .ci/run installs it.
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def console(page, web, pytestconfig) -> Console:
    """The console, not logged in."""
    return Console(page=page, base=web, layouts=pytestconfig.stash[LAYOUTS])


@pytest.fixture
def operator(transactional_db):
    """A staff member who may do everything in the console; the password is PASSWORD."""
    return get_user_model().objects.create_user(
        "operator", password=PASSWORD, is_staff=True, is_superuser=True
    )


@pytest.fixture
def staff_console(console, operator) -> Console:
    """The console, logged in through its login form, on its index."""
    console.open("/admin/login/")
    console.log_in(operator.username)
    return console
