"""Settings. Configuration comes only from environment variables (see README, "Configuration")."""

import os
from pathlib import Path
from typing import Any

import environ

from core import localenv

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()

# Where `make run` ran, var/local.env holds the checkout's development settings (DEBUG=1, its own
# SECRET_KEY): read whenever it exists, under the environment, and said on stderr
# (core/localenv.py). LOCAL_ENV_FILE names another file, or none when empty (the tests).
LOCAL_ENV_FILE = env.str("LOCAL_ENV_FILE", default=str(VAR_DIR / "local.env"))
if LOCAL_ENV_FILE:
    localenv.load(Path(LOCAL_ENV_FILE))

DEBUG = env.bool("DEBUG", default=False)
# A fixed development key is only acceptable while DEBUG is on; production must set its own.
DEV_SECRET_KEY = "dev-only-insecure-key"
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY if DEBUG else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PLATFORM_VERSION = "0.1.0"

INSTALLED_APPS = [
    "core",  # before django_q, so that core's `qcluster` (drain-aware) wins
    "observability",
    "observability.incidents",
    "observability.alerting",
    "feedback",
    "integrations",
    "integrations.connections",
    "integrations.limits",
    "integrations.failures",
    "integrations.sync",
    "integrations.health",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # the docs page's Swagger UI, as static files: no CDN
    "django_q",
]

MIDDLEWARE = [
    # Outermost: every reply under /api and /v1 is the API's, whatever answered (core/middleware.py)
    "core.middleware.ApiReplies",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "core.urls"
WSGI_APPLICATION = "core.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    db: dict[str, Any] = env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'platform.sqlite3'}")
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Several processes (gunicorn, qcluster workers) share the file: WAL lets readers run
        # beside the writer, IMMEDIATE takes the write lock up front instead of failing on upgrade.
        db["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # A file, not memory, so that the tests' other processes (a real qcluster) share it;
        # one per run, so that two runs do not share it.
        db["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    else:
        # django-q2's ORM broker closes "old" connections on every call; with CONN_MAX_AGE=0 that
        # is a new PostgreSQL connection per enqueue (85/s instead of ~1,200/s, DESIGN.md).
        db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
        db["CONN_HEALTH_CHECKS"] = True
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cluster stats (heartbeats) go to the cache; web and cluster must share it, so it is the database.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "platform_cache",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The console's one time format ("2026-12-02 06:33:16 UTC") in Django's rendering: core.formats.
FORMAT_MODULE_PATH = ["core.formats"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# In development the fixed key stays a key to decrypt with: what a checkout stored before
# var/local.env gave it a SECRET_KEY of its own still decrypts.
DEV_FERNET_KEYS = [DEV_SECRET_KEY] if DEBUG and SECRET_KEY != DEV_SECRET_KEY else []
FERNET_KEYS = env.list("FERNET_KEYS", default=[SECRET_KEY, *DEV_FERNET_KEYS])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["core.auth.IsTenant"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JsonParser"],
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "core.openapi.ApiSchema",
}

# The OpenAPI schema (GET /api/schema) and its docs page (GET /api/docs): core/openapi.py. The
# plain Django views (OTLP, /metrics) are added by the hooks of the apps that own them.
SPECTACULAR_SETTINGS = {
    "TITLE": "Worker platform API",
    "DESCRIPTION": (
        "The platform's REST API (`/api`), its OTLP/HTTP receiver (`/v1`) and its Prometheus "
        "endpoint (`/metrics`). Every `/api` and `/v1` request needs a tenant's API key as "
        "`Authorization: Bearer <API key>`, except `/api/health/workers`, `/api/schema` and "
        '`/api/docs`. Every `/api` error is JSON: `{"error": <what to do>, "details": ...}`.'
    ),
    "VERSION": PLATFORM_VERSION,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.metrics_endpoint",
        "observability.openapi.otlp_endpoints",
    ],
    # Choice sets that several apps name alike ("severity", "state", "status"): one name each,
    # so that the schema's enums are stable and generation warns of no collision.
    "ENUM_NAME_OVERRIDES": {
        "SeverityEnum": "observability.alerting.models.Severity",
        "AlertStateEnum": "observability.alerting.models.State",
        "IncidentStatusEnum": "observability.incidents.models.Status",
        "IntegrationFailureStatusEnum": "integrations.failures.models.Status",
        "IntegrationFailureKindEnum": "integrations.failures.models.Kind",
        "ConnectionHealthStateEnum": "integrations.health.models.State",
    },
}

# --- The worker runtime -------------------------------------------------------------------
# django-q2 is the executor; retries, backoff and dead letters are the platform's own.
Q_CLUSTER_NAME = "platform"  # also django-q2's signing salt: the same for every cluster
Q_CLUSTER = {
    "name": Q_CLUSTER_NAME,
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=300),
    # The ORM broker re-delivers a task once its lock passes: it must exceed queue wait + timeout.
    "retry": env.int("Q_TIMEOUT", default=300) + 120,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": -1,  # successes are in the platform's own tables; failures are still saved
    "catch_up": False,
    "poll": env.float("Q_POLL", default=0.2),
    "label": "Task queue",
    "ALT_CLUSTERS": {"ingestion": {}, "reaction": {}},
}
# With WORKER_CLUSTERS=split, ingestion workers go to the `ingestion` cluster and reaction workers
# to `reaction` (run `manage.py qcluster --name ingestion` and `--name reaction`); with `single`,
# one `manage.py qcluster` runs all thirteen.
WORKER_CLUSTERS = env.str("WORKER_CLUSTERS", default="single")
DISPATCH_BATCH_SIZE = env.int("DISPATCH_BATCH_SIZE", default=500)
DISPATCH_LEASE_SECONDS = env.float("DISPATCH_LEASE_SECONDS", default=120)
DISPATCH_DRAIN_SECONDS = env.float("DISPATCH_DRAIN_SECONDS", default=20)
# Drain tasks of one worker at a time while its backlog fills whole batches.
DISPATCH_CONCURRENCY = env.int("DISPATCH_CONCURRENCY", default=2)
DISPATCH_SWEEP_SECONDS = env.float("DISPATCH_SWEEP_SECONDS", default=5)
DISPATCH_MAX_LOST_CLAIMS = env.int("DISPATCH_MAX_LOST_CLAIMS", default=3)
SHUTDOWN_DRAIN_TIMEOUT = env.float("SHUTDOWN_DRAIN_TIMEOUT", default=25)
EXTRA_EVENT_TYPES = env.list("EXTRA_EVENT_TYPES", default=[])  # operator factory events
WORKER_MODULES = env.list("WORKER_MODULES", default=[])  # extra worker declarations, by module
EVENT_RETENTION_DAYS = env.int("EVENT_RETENTION_DAYS", default=14)
HEALTH_BACKLOG_DEGRADED_SECONDS = env.int("HEALTH_BACKLOG_DEGRADED_SECONDS", default=60)
HEALTH_BACKLOG_UNHEALTHY_SECONDS = env.int("HEALTH_BACKLOG_UNHEALTHY_SECONDS", default=600)
# GET /metrics (core.prometheus) answers a scrape that sends this as a Bearer token; unset, the
# endpoint is off (404).
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")

# --- The REST API ---------------------------------------------------------------------------
# A JSON body under /api is refused (413) beyond this, before it is read.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
# POST /api/events: an event's data as compact UTF-8 JSON (413 beyond), its nesting (400 beyond),
# and the requests per second a tenant may make (429 beyond; 0: no limit).
EVENT_DATA_MAX_BYTES = env.int("EVENT_DATA_MAX_BYTES", default=64 * 1024)
EVENT_DATA_MAX_DEPTH = env.int("EVENT_DATA_MAX_DEPTH", default=32)
EVENT_TENANT_REQUESTS_PER_SECOND = env.int("EVENT_TENANT_REQUESTS_PER_SECOND", default=100)

# --- OpenTelemetry -----------------------------------------------------------------------
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="worker-platform")
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"trace": {"()": "core.telemetry.TraceContextFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s "
            "trace_id=%(trace_id)s span_id=%(span_id)s %(message)s"
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["trace"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django-q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")}},
}

# --- Webhooks ------------------------------------------------------------------------------
# Full-jitter exponential backoff between delivery attempts: attempt n waits up to
# min(MAX, BASE * 2^(n-1)), so with the defaults the last waits are up to an hour.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=60)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=6 * 3600)
# Endpoints must be https (outside DEBUG), and may not be anything but public unicast addresses
# unless listed here (hosts, addresses or CIDRs, each perhaps with a port that is then the only
# one allowed: `127.0.0.1:9000`, `[::1]:9000`; comma-separated): checked when a subscription is
# saved and again on every connection, against the address and port actually connected to.
WEBHOOK_REQUIRE_HTTPS = env.bool("WEBHOOK_REQUIRE_HTTPS", default=not DEBUG)
WEBHOOK_ALLOWED_HOSTS = env.list("WEBHOOK_ALLOWED_HOSTS", default=[])
# The same allowlist under the name integrations' calls know it by (vendors, probes): core.outbound
# allows what either lists, for every outbound call.
OUTBOUND_ALLOWED_HOSTS = env.list("OUTBOUND_ALLOWED_HOSTS", default=[])
# The web tier's port (gunicorn binds it in the Docker image and under `make run`): set it for
# every process, clusters too, so that no webhook can call the platform itself on it.
PORT = env.int("PORT", default=8000)
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=3)
# The longest wait for the reply (for its status line, then between bytes of it).
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10)
# POSTs in flight per worker process, and at most this many to one endpoint (scheme, host,
# port), so that one slow receiver cannot take every connection.
WEBHOOK_CONCURRENCY = env.int("WEBHOOK_CONCURRENCY", default=64)
WEBHOOK_PER_ENDPOINT_CONCURRENCY = env.int("WEBHOOK_PER_ENDPOINT_CONCURRENCY", default=8)
# Deliveries one call of WebhookDeliveryWorker's handler takes, and POSTs concurrently.
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=128)
# A batch starts no POST after this long (the rest go back to the queue unattempted), so that
# it ends within its lease (DISPATCH_LEASE_SECONDS) even behind a slow endpoint.
WEBHOOK_BATCH_SECONDS = env.float("WEBHOOK_BATCH_SECONDS", default=30)
# After a rotation the old secret keeps signing beside the new one for this long.
WEBHOOK_SECRET_OVERLAP_SECONDS = env.float("WEBHOOK_SECRET_OVERLAP_SECONDS", default=24 * 3600)
WEBHOOK_DELIVERY_RETENTION_DAYS = env.int("WEBHOOK_DELIVERY_RETENTION_DAYS", default=30)
# A subscription whose deliveries fail without one success for this long is disabled.
WEBHOOK_DISABLE_AFTER_SECONDS = env.float("WEBHOOK_DISABLE_AFTER_SECONDS", default=5 * 86400)
# Each endpoint host's circuit (per tenant) opens on Convoy's terms (70 % of at least 10 calls
# in five minutes failed) only once failures went on this long: one delivery's quick retries
# (a replay, an operator's recover) do not open it.
WEBHOOK_CIRCUIT_SUSTAINED_SECONDS = env.float("WEBHOOK_CIRCUIT_SUSTAINED_SECONDS", default=30)
# Each endpoint host's rate bucket (per tenant): POSTs per second, sustained, and at once;
# a receiver's Retry-After on 429 or 503 blocks it further.
WEBHOOK_HOST_RATE = env.float("WEBHOOK_HOST_RATE", default=1000)
WEBHOOK_HOST_BURST = env.int("WEBHOOK_HOST_BURST", default=1000)
# A reply slower than this counts as a slow call in its host's circuit.
WEBHOOK_SLOW_SECONDS = env.float("WEBHOOK_SLOW_SECONDS", default=5)
# A delivery's waits (429s, long Retry-Afters, its host's circuit or bucket) add up to at most
# this before it is dead-lettered for waiting too long; unset: the retry schedule's span (every
# backoff at its ceiling), so waiting never outlasts what failing would.
WEBHOOK_MAX_WAIT_SECONDS = env.float("WEBHOOK_MAX_WAIT_SECONDS", default=None)

# Admin assets are served by WhiteNoise under gunicorn; locally straight from the apps.
WHITENOISE_USE_FINDERS = DEBUG
# Threads per web worker process that run Django (core.asgi), each with its database
# connection; requests reach them only once received whole. Processes: WEB_CONCURRENCY.
WEB_THREADS = env.int("WEB_THREADS", default=4)
# A request body must arrive within REQUEST_BODY_TIMEOUT_SECONDS plus one second per
# REQUEST_BODY_MIN_RATE bytes (408 otherwise): a slow client holds no thread, but not forever.
REQUEST_BODY_TIMEOUT_SECONDS = env.float("REQUEST_BODY_TIMEOUT_SECONDS", default=20)
REQUEST_BODY_MIN_RATE = env.int("REQUEST_BODY_MIN_RATE", default=16 * 1024)

# --- OTLP ingestion ------------------------------------------------------------------------
OTLP_MAX_BODY_BYTES = env.int("OTLP_MAX_BODY_BYTES", default=16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = OTLP_MAX_BODY_BYTES  # Django's own cap on request.body
OTLP_TENANT_REQUESTS_PER_SECOND = env.int("OTLP_TENANT_REQUESTS_PER_SECOND", default=500)
OTLP_BACKLOG_CEILING = env.int("OTLP_BACKLOG_CEILING", default=20000)  # batches waiting
OTLP_BATCH_RETENTION_HOURS = env.int("OTLP_BATCH_RETENTION_HOURS", default=24)
TELEMETRY_RETENTION_DAYS = env.int("TELEMETRY_RETENTION_DAYS", default=7)
# Added to a qcluster's niceness (and its workers'): on a machine it shares with the web tier,
# background work yields the CPU to the requests that wait for it. 0 leaves it as it is.
QCLUSTER_NICE = env.int("QCLUSTER_NICE", default=5)
TRACE_SLOW_SPAN_MS = env.int("TRACE_SLOW_SPAN_MS", default=1000)

# --- Alerting and incidents (observability/alerting, observability/incidents) -------------
# Windows of one rule a tick evaluates at most; a tick after downtime catches up over several.
ALERT_CATCH_UP_WINDOWS = env.int("ALERT_CATCH_UP_WINDOWS", default=60)
# How long an alert instance's state changes (its history) are kept.
ALERT_HISTORY_RETENTION_DAYS = env.int("ALERT_HISTORY_RETENTION_DAYS", default=30)
# After this long without a series, an instance without an open alert is forgotten.
ALERT_INSTANCE_EXPIRY_HOURS = env.int("ALERT_INSTANCE_EXPIRY_HOURS", default=24)
# The most windows a rule preview (API or console) evaluates.
ALERT_PREVIEW_MAX_WINDOWS = env.int("ALERT_PREVIEW_MAX_WINDOWS", default=1440)
# A trigger joins the open incident of its group key within this rolling window (PagerDuty: 5m-1h).
INCIDENT_GROUP_WINDOW_SECONDS = env.int("INCIDENT_GROUP_WINDOW_SECONDS", default=3600)
# A resolved incident of the same group key is reopened within this, instead of a new one.
INCIDENT_REOPEN_WINDOW_SECONDS = env.int("INCIDENT_REOPEN_WINDOW_SECONDS", default=1800)
# An incident whose triggers sent nothing for this long is resolved (a rule deleted while firing).
INCIDENT_RESOLVE_TIMEOUT_SECONDS = env.int("INCIDENT_RESOLVE_TIMEOUT_SECONDS", default=24 * 3600)
# A resolved incident is closed this long after its resolution.
INCIDENT_CLOSE_AFTER_SECONDS = env.int("INCIDENT_CLOSE_AFTER_SECONDS", default=24 * 3600)
# Trigger events one call of IncidentAnalysisWorker's handler takes.
INCIDENT_BATCH_SIZE = env.int("INCIDENT_BATCH_SIZE", default=500)

# --- Integrations (integrations/sync, integrations/failures) ------------------------------
# Vendor pages one IntegrationSyncWorker message fetches at most: their records, events and
# the last one's checkpoint commit with the message, so a crash re-reads at most these pages.
# They are fetched before the message takes any lock, so more pages make fewer, bigger writes
# without holding a lock through the vendor's replies; fewer re-read less after a crash.
SYNC_PAGES_PER_MESSAGE = env.int("SYNC_PAGES_PER_MESSAGE", default=100)
# And the vendor's reply bodies one message reads at most before it writes: what it holds
# meanwhile is its rows and events, about six times this at the peak (measured: 2.8 MB of
# replies, 17 MiB), so about 50 MiB per sync message at the default. A message's fixed cost
# (its claim, locks, checkpoint and commit) is spread over as much data as this allows: a
# hundred pages of small records, a handful of large ones (about twenty pages of GitHub's
# issues at 4 KB each). A message starts no further page past it; one larger page is read.
SYNC_MESSAGE_BYTES = env.int("SYNC_MESSAGE_BYTES", default=8 << 20)
# A message starts no further page once its fetching has taken this long (a slow vendor): its
# pages so far are written and the next message goes on. With the request timeout, this keeps
# a message well inside its lease (DISPATCH_LEASE_SECONDS).
SYNC_FETCH_SECONDS = env.float("SYNC_FETCH_SECONDS", default=10)
# The longest wait for a vendor's reply to one page request.
SYNC_REQUEST_TIMEOUT_SECONDS = env.float("SYNC_REQUEST_TIMEOUT_SECONDS", default=30)
# A run told to wait longer than this (a rate limit's reset, a Retry-After, an open circuit)
# is paused, not failed; under it the page is due again then, no attempt spent (NotYet).
SYNC_MAX_WAIT_SECONDS = env.float("SYNC_MAX_WAIT_SECONDS", default=900)
# Mark-and-sweep deletes the records a complete full run did not see only when they are at
# most this share of the stream's records: a vendor's empty or truncated reply deletes nothing.
SYNC_MAX_DELETE_RATIO = env.float("SYNC_MAX_DELETE_RATIO", default=0.5)
# Age after which resolved and ignored integration failures are deleted with their attempts
# (the ones still open, poisoned or acknowledged stay: they still need someone).
INTEGRATION_FAILURE_RETENTION_DAYS = env.int("INTEGRATION_FAILURE_RETENTION_DAYS", default=30)
