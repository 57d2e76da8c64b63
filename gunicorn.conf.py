"""gunicorn's configuration: the one `make run`, the Docker image and `make bench` start with
(`gunicorn --config gunicorn.conf.py --bind HOST:PORT`).

gunicorn's asyncio worker takes connections and parses requests; core.asgi receives each body
in that event loop and only then gives the request to one of WEB_THREADS threads running
Django. A slow client (headers or body) so holds a socket, never a thread: it cannot starve the
others. In production put a buffering reverse proxy in front all the same (README, "Operating
it"): it bounds slow headers and idle connections, which this does not.
"""

import os

wsgi_app = "core.asgi:application"
chdir = os.path.dirname(os.path.abspath(__file__))  # the project, wherever it is started from
worker_class = "asgi"
# Processes; each runs WEB_THREADS threads (core.settings) for Django.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# core.asgi answers no lifespan messages: it needs no start-up or shutdown hook.
asgi_lifespan = "off"
# A worker whose event loop stops answering is restarted after this long; also how long
# gunicorn waits for a body's next bytes (core.asgi answers 408 before, see BODY_IDLE).
timeout = 30
graceful_timeout = 30
keepalive = 5
accesslog = "-"
# gunicorn's control socket has one path per user ($HOME/.gunicorn/gunicorn.ctl): a second
# gunicorn on the machine (tests, a benchmark, another checkout) would take it over. Nothing
# here uses it (gunicorn answers the usual signals: TERM, HUP, TTIN, TTOU).
control_socket_disable = True


def on_starting(server) -> None:
    """gunicorn reads this file by itself when started in the project's folder, so an app named
    on the command line (`gunicorn core.wsgi:application`, as before this file) would run on
    the asyncio worker, which answers every request of a WSGI app with a 500. Refuse to start
    instead, saying what to do."""
    named = server.app.app_uri
    if named != wsgi_app and server.cfg.worker_class_str == worker_class:
        raise SystemExit(
            f"gunicorn.conf.py serves {wsgi_app} with the {worker_class} worker, but "
            f"{named} was named: drop the app argument (`gunicorn --bind HOST:PORT`), or "
            "serve the WSGI app with another worker (`--config /dev/null`)."
        )
