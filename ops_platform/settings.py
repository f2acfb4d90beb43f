"""Settings, read from the environment.

Two runtime modes share this file:
- embedded default (``OPS_DEMO=1``): SQLite file, Celery eager, DEBUG on, a throwaway SECRET_KEY;
- production-like: ``DATABASE_URL`` (PostgreSQL, psycopg 3), ``CELERY_BROKER_URL`` (Redis),
  ``SECRET_KEY`` required and DEBUG off unless asked for.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEMO = env.bool("OPS_DEMO", default=False)
DEBUG = env.bool("DEBUG", default=DEMO)

if DEMO:
    SECRET_KEY = env.str("SECRET_KEY", default="demo-only-insecure-key-never-use-in-production")
else:
    try:
        SECRET_KEY = env.str("SECRET_KEY")
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set outside the demo (set OPS_DEMO=1 for the embedded demo)."
        ) from exc

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEMO or DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "csp",
    "axes",
    "ops_platform.core",
    "queues",
    "routing",
    "qa",
    "analytics",
    "investigation",
]
# The demo world (``manage.py demo_seed``) exists only in the embedded demo; production never installs it.
if DEMO:
    INSTALLED_APPS.append("fixtures")

MIDDLEWARE = [
    # Off unless TRACING_ENABLED: each request a span (ops_platform/core/tracing.py).
    "ops_platform.core.tracing.TracingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Outermost after security headers: turns an unreachable database into a 503 for every view below it.
    "ops_platform.core.middleware.DatabaseUnavailableMiddleware",
    "ops_platform.core.middleware.RefusalMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ops_platform.core.middleware.NoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: a username+IP that failed AXES_FAILURE_LIMIT times is refused, right password or not,
# until the cool-off passes (login form and admin login alike). Then local passwords (which refuse everybody
# but the break-glass accounts when LOCAL_PASSWORDS is off) and single sign-on (which refuses while OIDC_ENABLED
# is off): both read their settings on every sign-in (ops_platform/core/sso.py, docs/sso.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "ops_platform.core.sso.PasswordBackend",
    "ops_platform.core.sso.SsoBackend",
]

ROOT_URLCONF = "ops_platform.urls"
WSGI_APPLICATION = "ops_platform.wsgi.application"
AUTH_USER_MODEL = "core.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

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
                "ops_platform.core.sso.sign_in_options",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'ops_platform.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The embedded mode is one process at a time; wait for the writer instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {"timeout": 20, "transaction_mode": "IMMEDIATE"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_cache_url = env.str("CACHE_URL", default="locmem://")
if _cache_url.startswith(("redis://", "rediss://")):
    # Short socket timeouts: a Redis that hangs must not hold requests (the rate limit fails open without it).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic writes; the benchmarks and drills point it at a temporary directory of their own.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
_MEDIA_BACKEND = env.str("MEDIA_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
    # Items' images as the platform stored them (re-encoded copies and blurred previews), served only through
    # signed, expiring /media/copy/<token> links. Any Django storage backend: S3-compatible object storage by
    # MEDIA_STORAGE_BACKEND=storages.backends.s3.S3Storage with django-storages[s3] installed and its AWS_*
    # settings (docs/media.md). Never served as static files.
    "media": {
        "BACKEND": _MEDIA_BACKEND,
        "OPTIONS": {"location": env.str("MEDIA_STORAGE_ROOT", default=str(BASE_DIR / "var" / "media"))}
        if _MEDIA_BACKEND.endswith("FileSystemStorage")
        else {},
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Cookies and headers: secure by default outside the demo (which runs on plain http://127.0.0.1).
# docs/access.md lists them; tests/core/test_security_headers.py checks them on real responses.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# No script reads the CSRF cookie: pages carry the token in the form, a <meta> tag or htmx's hx-headers.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
# Proxies of ours in front of the app, each appending to X-Forwarded-For: the throttles take the client's
# address that many entries from the end (ops_platform/core/client_address.py). Only read behind the proxy.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
# HSTS is sent on https responses only (SecurityMiddleware), so it never touches the demo's plain http.
# Subdomains and preload are the deployment's call: they bind every host under the domain.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a TLS proxy, plain http is redirected to https; the proxy's health checks on /healthz are not.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=BEHIND_TLS_PROXY and not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

# Content-Security-Policy (django-csp): only this origin's own files; no inline script, no inline style, no
# eval. Templates use classes and one static JS file per page; htmx is told not to inject its indicator
# <style> nor to eval (templates/base.html). The analytics charts are inline SVG from vl-convert: it draws
# with presentation attributes (fill, stroke, font-size ...), which style-src does not govern, and emits no
# style="" attribute (the browser test of every dashboard page fails on a refused style), so style-src needs
# no 'unsafe-inline'.
# img-src: reviewers see items' media only as the platform's stored copies, on this origin (never the third-party
# address: a hotlinked image tells its host who looked and when); the API reference's stylesheet uses data: icons.
# The two API reference pages relax style-src for their bundled renderers (ops_platform/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

# --- Login throttling (django-axes) ----------------------------------------------------------------
# Failures are counted per username and client address together, so one person mistyping cannot lock out
# a colleague behind the same proxy, and a guesser is stopped per account. Counts live in the database
# (visible and resettable in the admin: "Access attempts", or `manage.py axes_reset`).
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "ops_platform.core.client_address.client_address"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False

# --- Single sign-on: OpenID Connect (mozilla-django-oidc; docs/sso.md) ----------------------------------
# Off by default: the embedded demo signs in with passwords. On, the sign-in page offers the provider's sign-in;
# people are created on their first sign-in and their roles (and vendor team) follow their provider groups on
# every sign-in. A person none of whose groups maps to a role is refused (a page saying so).
OIDC_ENABLED = env.bool("OIDC_ENABLED", default=False)
# Local passwords: off, the sign-in page offers only single sign-on and no password signs in anywhere (the
# admin's sign-in page included), except the break-glass accounts below on the admin's sign-in page.
LOCAL_PASSWORDS = env.bool("LOCAL_PASSWORDS", default=True)
# Superusers who may still sign in with their password on the admin's sign-in page while local passwords are
# off (for when the provider is down). Throttled by django-axes like every password, audited as break_glass.
LOCAL_PASSWORDS_BREAK_GLASS = env.list("LOCAL_PASSWORDS_BREAK_GLASS", default=[])
if not LOCAL_PASSWORDS and not OIDC_ENABLED:
    raise ImproperlyConfigured("LOCAL_PASSWORDS=off needs OIDC_ENABLED=on: nobody could sign in.")
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_ISSUER = env.str("OIDC_OP_ISSUER", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile")
OIDC_USE_PKCE = env.bool("OIDC_USE_PKCE", default=True)
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT_SECONDS", default=10.0)
# The claim holding the person's groups (in the userinfo answer, else the ID token).
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
# Provider group -> platform role ("ops-reviewers=reviewer,ops-qa=senior_reviewer,ops-admins=admin"); several
# groups may give the same role, a person gets the roles of all their groups.
OIDC_ROLE_GROUPS = env.dict("OIDC_ROLE_GROUPS", default={})
# Provider group -> team slug ("vendor-a-reviewers=vendor-a-team"): a person in one is on that (vendor) team.
OIDC_TEAM_GROUPS = env.dict("OIDC_TEAM_GROUPS", default={})
_OIDC_REQUIRED = (
    "OIDC_RP_CLIENT_ID",
    "OIDC_RP_CLIENT_SECRET",
    "OIDC_OP_ISSUER",
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
    "OIDC_OP_JWKS_ENDPOINT",
)
if OIDC_ENABLED and (_missing := [name for name in _OIDC_REQUIRED if not globals()[name]]):
    raise ImproperlyConfigured(f"OIDC_ENABLED=on needs {', '.join(_missing)} (docs/sso.md).")
OIDC_AUTHENTICATION_CALLBACK_URL = "sso-callback"
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/"
OIDC_STORE_ID_TOKEN = False

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["ops_platform.core.api_auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["ops_platform.core.api_auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["ops_platform.core.api_auth.ApiClientRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["ops_platform.core.api_errors.LimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ops_platform.core.api_errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# The largest intake body we read (a 1,000-item batch of long texts fits well inside).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=10 * 1024 * 1024)
API_MAX_BATCH_ITEMS = 1000
# Deepest JSON nesting a request body may have (item metadata allows 5 levels inside a list of items).
API_MAX_JSON_DEPTH = 32
API_DEFAULT_RATE_PER_MINUTE = env.int("API_DEFAULT_RATE_PER_MINUTE", default=600)
# Invalid API keys per client address and window before that address gets 429 (a key guesser's budget).
API_KEY_FAILURE_LIMIT = env.int("API_KEY_FAILURE_LIMIT", default=20)
API_KEY_FAILURE_WINDOW_SECONDS = env.int("API_KEY_FAILURE_WINDOW_SECONDS", default=300)
API_IDEMPOTENCY_TTL = timedelta(hours=24)
# The oldest content-creation time (an item's created_at) intake keeps; older is refused as implausible.
INTAKE_CREATED_AT_MAX_AGE = timedelta(days=env.int("INTAKE_CREATED_AT_MAX_AGE_DAYS", default=3650))

SPECTACULAR_SETTINGS = {
    "TITLE": "Trust & Safety review operations API",
    "DESCRIPTION": "Submit content, user reports and appeals; read their triage and review status.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ops_platform.core.api_schema.require_request_bodies",
    ],
}

# --- Celery ---------------------------------------------------------------------------------------
# No broker configured means the embedded mode: tasks run in-process, at once (and the in-memory
# transport stands in, so nothing tries to reach a Redis that is not there).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not env.str("CELERY_BROKER_URL", default=""))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "memory://"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
# Slow work never starves triage: each family of tasks has its own queue and its own workers.
CELERY_TASK_ROUTES = {
    # Long backtests must not hold up triage; glob routes are tried in this order.
    "routing.tasks.backtest_run_task": {"queue": "default"},
    "routing.tasks.*": {"queue": "triage"},
    "queues.tasks.*": {"queue": "default"},
    "ops_platform.core.tasks.webhook_*": {"queue": "webhooks"},
    "analytics.tasks.*": {"queue": "analytics"},
    "qa.tasks.*": {"queue": "default"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection around every task unless told to reuse it
# (what reconnecting costs: docs/performance.md, "Kernel").
CELERY_DB_REUSE_MAX = 100
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must give up quickly when Redis is down: intake has already committed the item and
# the sweeper re-sends it, so a slow retry loop would only hold the HTTP request open.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The embedded mode has no beat: the web process runs the same schedule in a thread (ops_platform/core/periodic.py),
# waking every PERIODIC_TICK_SECONDS to start the jobs that are due.
PERIODIC_IN_PROCESS = env.bool("PERIODIC_IN_PROCESS", default=CELERY_TASK_ALWAYS_EAGER)
PERIODIC_TICK_SECONDS = env.float("PERIODIC_TICK_SECONDS", default=10.0)
# Dashboards read rollups: refreshing them (and evaluating alerts) every minute keeps every panel within a minute
# of the raw rows. Classifier rollups recompute whole weeks, so outside the embedded mode they run less often.
ANALYTICS_REFRESH_EVERY = timedelta(seconds=env.int("ANALYTICS_REFRESH_EVERY_SECONDS", default=60))
CLASSIFIER_ROLLUPS_EVERY = timedelta(
    seconds=env.int("CLASSIFIER_ROLLUPS_EVERY_SECONDS", default=60 if CELERY_TASK_ALWAYS_EAGER else 900)
)
# /metrics (analytics/exporter, docs/metrics.md): the periodic job that keeps its figures runs this often; rows
# stamped less than METRICS_SETTLE_SECONDS ago are recounted on every run, older ones are added once.
METRICS_REFRESH_EVERY = timedelta(seconds=env.int("METRICS_REFRESH_EVERY_SECONDS", default=15))
METRICS_SETTLE_SECONDS = env.int("METRICS_SETTLE_SECONDS", default=120)
# Who may scrape it: a request carrying "Authorization: Bearer <METRICS_TOKEN>", or one from an address in
# METRICS_ALLOWED_ADDRESSES (comma-separated addresses or networks, e.g. 10.0.0.0/8). Neither set: refused.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_ADDRESSES = env.list("METRICS_ALLOWED_ADDRESSES", default=[])
# How often the sweepers look for un-triaged items and overdue webhook events (the fault drills shorten it).
TRIAGE_SWEEP_EVERY = timedelta(seconds=env.int("TRIAGE_SWEEP_EVERY_SECONDS", default=60))
WEBHOOK_SWEEP_EVERY = timedelta(seconds=env.int("WEBHOOK_SWEEP_EVERY_SECONDS", default=60))
# Retention after an item's final decision (docs/retention.md): its content (text, media, metadata), then, longer,
# its decisions' free-text rationale; a policy may set its own. The purge commits every PURGE_BATCH_SIZE items.
CONTENT_RETENTION_DAYS = env.int("CONTENT_RETENTION_DAYS", default=365)
RECORD_RETENTION_DAYS = env.int("RECORD_RETENTION_DAYS", default=7 * 365)
PURGE_BATCH_SIZE = env.int("PURGE_BATCH_SIZE", default=5000)
PURGE_EVERY = timedelta(seconds=env.int("PURGE_EVERY_SECONDS", default=3600))
CELERY_BEAT_SCHEDULE = {
    "purge-expired-content": {
        "task": "queues.tasks.content_purge_task",
        "schedule": PURGE_EVERY,
    },
    "sweep-untriaged-items": {
        "task": "routing.tasks.items_sweep_untriaged_task",
        "schedule": TRIAGE_SWEEP_EVERY,
    },
    "purge-idempotency-records": {
        "task": "routing.tasks.idempotency_records_purge_task",
        "schedule": timedelta(hours=1),
    },
    "fail-stalled-backtests": {
        "task": "routing.tasks.backtests_stalled_fail_task",
        "schedule": timedelta(minutes=5),
    },
    "expire-review-leases": {
        "task": "queues.tasks.leases_expire_task",
        "schedule": timedelta(seconds=60),
    },
    "lift-expired-account-actions": {
        "task": "queues.tasks.account_actions_expire_task",
        "schedule": timedelta(seconds=60),
    },
    "scoring-coverage-check": {
        "task": "routing.tasks.scoring_coverage_check_task",
        "schedule": timedelta(seconds=60),
    },
    "escalate-overdue-items": {
        "task": "routing.tasks.items_escalate_overdue_task",
        "schedule": timedelta(seconds=60),
    },
    "qa-sample-decisions": {
        "task": "qa.tasks.decisions_sample_task",
        "schedule": timedelta(seconds=60),
    },
    "qa-inject-golden-items": {
        "task": "qa.tasks.golden_inject_task",
        "schedule": timedelta(minutes=5),
    },
    "qa-score-golden-items": {
        "task": "qa.tasks.golden_results_score_task",
        "schedule": timedelta(seconds=60),
    },
    "database-statistics": {
        "task": "ops_platform.core.tasks.database_statistics_task",
        "schedule": timedelta(days=1),
    },
    "sweep-webhook-events": {
        "task": "ops_platform.core.tasks.webhook_events_sweep_task",
        "schedule": WEBHOOK_SWEEP_EVERY,
    },
    "analytics-refresh-rollups": {
        "task": "analytics.tasks.rollups_refresh_task",
        "schedule": ANALYTICS_REFRESH_EVERY,
    },
    "analytics-refresh-classifier-rollups": {
        "task": "analytics.tasks.classifier_rollups_refresh_task",
        "schedule": CLASSIFIER_ROLLUPS_EVERY,
    },
    "analytics-evaluate-alerts": {
        "task": "analytics.tasks.alerts_evaluate_task",
        "schedule": ANALYTICS_REFRESH_EVERY,
    },
    "analytics-metrics-refresh": {
        "task": "analytics.tasks.metrics_refresh_task",
        "schedule": METRICS_REFRESH_EVERY,
    },
    "analytics-backlog-snapshot": {
        "task": "analytics.tasks.backlog_snapshot_task",
        "schedule": timedelta(minutes=15),
    },
    "analytics-warm-capacity-forecasts": {
        "task": "analytics.tasks.capacity_forecasts_warm_task",
        "schedule": timedelta(minutes=30),
    },
    "analytics-nightly-rebuild": {
        "task": "analytics.tasks.rollups_nightly_task",
        "schedule": crontab(hour=3, minute=30),
    },
}

# Triage: items still un-triaged this long after intake (or the last re-send) are sent again.
TRIAGE_SWEEP_AFTER = timedelta(seconds=env.int("TRIAGE_SWEEP_AFTER_SECONDS", default=120))
TRIAGE_BATCH_SIZE = 500

# --- OpenTelemetry traces (ops_platform/core/tracing.py, docs/deploy.md) ----------------------------------
# Off by default. On: intake request -> triage task -> scoring and routing in one trace across processes, sent to
# the provider the deployment installed (opentelemetry-instrument) or, failing that, to TRACING_EXPORTER:
# "console" (stdout) or "none" (spans made and dropped).
TRACING_ENABLED = env.bool("TRACING_ENABLED", default=False)
TRACING_EXPORTER = env.str("TRACING_EXPORTER", default="console")

# --- Outbound webhooks (ops_platform/core/webhooks.py) ---------------------------------------------
# Each attempt gives the receiver this long (connect, write, wait for the answer); 2xx is delivered.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# Failed attempts are retried after base, 2x base, 4x base ... (capped, with jitter); after the last one the
# event is given up until someone re-drives it. The defaults spread 8 attempts over about an hour.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=3600.0)

# Accounts (docs/accounts.md): how long a strike counts when its policy does not say.
ACCOUNT_STRIKE_EXPIRY_DAYS = env.int("ACCOUNT_STRIKE_EXPIRY_DAYS", default=90)
# An event whose next attempt is this overdue (broker down at emit, a lost retry) is re-sent by the sweeper.
WEBHOOK_SWEEP_AFTER = timedelta(seconds=env.int("WEBHOOK_SWEEP_AFTER_SECONDS", default=600))

# --- Email: escalation notices to queue leads (queues/notices.py) --------------------------------------
# EMAIL_URL as django-environ reads it (smtp+tls://user:password@host:587); without it mail goes to the console.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ops-platform@localhost")
# Where people reach the web UI, for links in email.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- The reviewer workspace (queues/) -------------------------------------------------------------
# The most items one bulk decision may close (senior reviewers; each batch is audited under one id).
BULK_DECISION_MAX = env.int("BULK_DECISION_MAX", default=200)
# An item escalated to a named colleague is theirs alone this long; then the lease sweep gives it back to
# everyone who may work its queue (nobody is left holding work they cannot get to).
ESCALATION_RESERVATION = timedelta(minutes=env.int("ESCALATION_RESERVATION_MINUTES", default=240))
# A skipped item goes to the other reviewers first: the one who skipped it is not given it again for this long.
SKIP_HOLDOFF = timedelta(minutes=env.int("SKIP_HOLDOFF_MINUTES", default=30))
# How long after a bulk decision its batch may be reverted (items back to their queue, clients told).
BULK_DECISION_REVERT_WINDOW = timedelta(hours=env.int("BULK_DECISION_REVERT_HOURS", default=24))
# How long a bulk decision's preview stays valid for its confirmation.
BULK_DECISION_CONFIRM_WITHIN = timedelta(minutes=15)

# --- Routing rules (routing/rules/) ----------------------------------------------------------------
# Built in, above every rule set: an item whose sexual/minors score reaches this goes to the restricted
# child-safety queue at top priority and is never auto-actioned.
ROUTING_CHILD_SAFETY_THRESHOLD = env.float("ROUTING_CHILD_SAFETY_THRESHOLD", default=0.5)
ROUTING_CHILD_SAFETY_QUEUE = env.str("ROUTING_CHILD_SAFETY_QUEUE", default="child-safety")
ROUTING_CHILD_SAFETY_PRIORITY = 100
# Backtests over more items than this run as a Celery task with progress; smaller ones run in the request.
ROUTING_BACKTEST_INLINE_MAX = env.int("ROUTING_BACKTEST_INLINE_MAX", default=20_000)
# A running backtest writes progress while it loads items (every few seconds); one silent this long was killed.
BACKTEST_STALLED_AFTER = timedelta(minutes=env.int("BACKTEST_STALLED_AFTER_MINUTES", default=15))
# The escalation sweep looks at this many overdue items per pass.
ROUTING_ESCALATION_BATCH = 2_000

# --- Classifier scoring (routing/scoring/) -----------------------------------------------------------
# The backends that exist. A policy names a chain of them (Policy.classifier_chain); the default
# chain uses OpenAI only when a key is configured, so the embedded mode scores with the local model.
SCORING_BACKENDS = ["openai_moderation", "openai_policy", "local"]
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="") or None
OPENAI_TIMEOUT_SECONDS = env.float("OPENAI_TIMEOUT_SECONDS", default=10.0)
# The openai client's own retries: exponential backoff with jitter, honouring Retry-After on 429.
OPENAI_MAX_RETRIES = env.int("OPENAI_MAX_RETRIES", default=2)
OPENAI_MODERATION_MODEL = env.str("OPENAI_MODERATION_MODEL", default="omni-moderation-latest")
# Inputs per moderation request (the endpoint takes an array of strings).
OPENAI_MODERATION_BATCH = env.int("OPENAI_MODERATION_BATCH", default=32)
OPENAI_POLICY_MODEL = env.str("OPENAI_POLICY_MODEL", default="gpt-4o-mini")
# Items' media: fetched by the scoring worker before the classifiers (routing/scoring/media/fetcher.py).
MEDIA_FETCH_ENABLED = env.bool("MEDIA_FETCH_ENABLED", default=True)
MEDIA_MAX_PER_ITEM = env.int("MEDIA_MAX_PER_ITEM", default=4)
MEDIA_MAX_BYTES = env.int("MEDIA_MAX_BYTES", default=10 * 1024 * 1024)
MEDIA_FETCH_SECONDS = env.float("MEDIA_FETCH_SECONDS", default=10.0)
# Addresses fetched at once by a scoring worker, and the total time all of one item's fetches may take.
MEDIA_FETCH_CONCURRENCY = env.int("MEDIA_FETCH_CONCURRENCY", default=4)
MEDIA_ITEM_FETCH_SECONDS = env.float("MEDIA_ITEM_FETCH_SECONDS", default=20.0)
MEDIA_MAX_REDIRECTS = env.int("MEDIA_MAX_REDIRECTS", default=3)
# Name lookups: each capped at MEDIA_DNS_TIMEOUT_SECONDS (a caller waits no longer; the lookup's failure is then
# remembered), answers remembered MEDIA_DNS_CACHE_SECONDS and failures MEDIA_DNS_FAILURE_CACHE_SECONDS per worker
# process, so a name that does not resolve holds triage once per name and period, not once per address.
MEDIA_DNS_TIMEOUT_SECONDS = env.float("MEDIA_DNS_TIMEOUT_SECONDS", default=2.0)
MEDIA_DNS_CACHE_SECONDS = env.float("MEDIA_DNS_CACHE_SECONDS", default=60.0)
MEDIA_DNS_FAILURE_CACHE_SECONDS = env.float("MEDIA_DNS_FAILURE_CACHE_SECONDS", default=30.0)
# FOR BENCHMARKS ONLY, never in production; empty by default. "127.0.0.1:8765,[::1]:8765": loopback address and
# port pairs the media fetcher may reach although they are not public, so bench/e2e.py can serve its images
# itself. Only loopback addresses are accepted, each with its one port (docs/media.md).
MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS = env.list("MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS", default=[])
MEDIA_MAX_PIXELS = env.int("MEDIA_MAX_PIXELS", default=40_000_000)
MEDIA_COPY_MAX_SIDE = env.int("MEDIA_COPY_MAX_SIDE", default=1600)
# How long a reviewer's link to a stored copy works.
MEDIA_LINK_MAX_AGE = env.int("MEDIA_LINK_MAX_AGE", default=600)
# PDQ bank matches: at most this Hamming distance (31 is PDQ's customary threshold), and only for images whose
# PDQ quality reaches the minimum (flat images hash unreliably).
MEDIA_PDQ_MAX_DISTANCE = env.int("MEDIA_PDQ_MAX_DISTANCE", default=31)
MEDIA_PDQ_MIN_QUALITY = env.int("MEDIA_PDQ_MIN_QUALITY", default=50)
# Also match the image's seven rotations and flips (PDQ's dihedral hashes, from the same DCT): eight lookups.
MEDIA_PDQ_DIHEDRAL = env.bool("MEDIA_PDQ_DIHEDRAL", default=True)
SCORING_DEFAULT_CHAIN = env.list(
    "SCORING_DEFAULT_CHAIN", default=["openai_moderation", "local"] if OPENAI_API_KEY else ["local"]
)
# OpenAI moderation category -> our classifier category. Categories not listed are kept under their
# own name (prefixed "openai:") for analysis but are not policy categories.
OPENAI_MODERATION_CATEGORY_MAP = {
    "sexual": "sexual",
    "hate": "hate",
    "harassment": "harassment",
    "violence": "violence",
    "self-harm": "self-harm",
    "sexual/minors": "sexual/minors",
    "hate/threatening": "hate/threatening",
    "violence/graphic": "violence/graphic",
}
# Estimated USD per million tokens (input, output), by model-name prefix; moderation is free.
SCORING_PRICES_PER_MTOK = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1-mini": (0.40, 1.60)}
# Daily spending cap per backend in USD; once spent the backend is skipped (fallback) and ops alerted.
SCORING_DAILY_BUDGET_USD = {
    "openai_moderation": env.float("SCORING_BUDGET_MODERATION_USD", default=0) or None,
    "openai_policy": env.float("SCORING_BUDGET_POLICY_USD", default=25.0),
}
# Circuit breaker per backend: this many failed calls in a row open it for the cool-down; then one
# trial call decides whether it closes again.
SCORING_BREAKER_FAILURES = env.int("SCORING_BREAKER_FAILURES", default=5)
SCORING_BREAKER_COOLDOWN = timedelta(seconds=env.int("SCORING_BREAKER_COOLDOWN_SECONDS", default=30))
# PII removed before any text leaves the machine (routing/scoring/redaction.py).
SCORING_REDACT = env.list("SCORING_REDACT", default=["email", "phone", "card", "ip", "url_token", "secret"])
SCORING_BATCH_SIZE = env.int("SCORING_BATCH_SIZE", default=500)
# Operating point per category used by the evaluation command (routing rules set their own).
SCORING_THRESHOLDS = {category: 0.5 for category in OPENAI_MODERATION_CATEGORY_MAP.values()}
# The precision at which model cards and classifier_evaluate report recall (and the threshold reaching it).
SCORING_TARGET_PRECISION = env.float("SCORING_TARGET_PRECISION", default=0.9)
# The labelled seed set every local-model version learns from, QA-verified labels added to it (MIT; shipped
# in routing/scoring/seed/, so a fresh install, the demo and CI train a real model without a download).
SCORING_SEED_SET = env.str(
    "SCORING_SEED_SET",
    default=str(BASE_DIR / "routing" / "scoring" / "seed" / "openai-moderation-samples-1680.jsonl.gz"),
)

# --- Analytics: classifier performance (analytics/selectors/classifiers.py) -----------------------
# The "active threshold" per classifier category at which dashboards report precision, recall, FPR, F1
# and lift: a score at or above it counts as flagged. Routing rules keep their own thresholds in their
# conditions; set these to the operating points the rules use. Categories not listed use "default".
# Rollups bucket scores to hundredths, so a threshold is applied at the bucket edge at or above it.
ANALYTICS_CLASSIFIER_THRESHOLDS: dict[str, float] = {"default": 0.5}

# --- Analytics: upkeep (analytics/tasks.py) -------------------------------------------------------------
# Nightly, the rollups of the last days (operations) and weeks (classifiers) are recomputed from raw rows, which
# catches rows whose transactions committed after the incremental cursors had read past them.
ANALYTICS_NIGHTLY_REBUILD_DAYS = env.int("ANALYTICS_NIGHTLY_REBUILD_DAYS", default=3)
ANALYTICS_NIGHTLY_REBUILD_WEEKS = env.int("ANALYTICS_NIGHTLY_REBUILD_WEEKS", default=2)
# Backlog snapshots (one row per queue and age bucket every 15 minutes) older than this are deleted nightly;
# the dashboards' longest period is 366 days.
ANALYTICS_BACKLOG_RETENTION = timedelta(days=env.int("ANALYTICS_BACKLOG_RETENTION_DAYS", default=400))

# --- Analytics: capacity planning assumptions (analytics/selectors/capacity.py) -------------------
# Share of rostered time lost to leave, training and meetings; share of floor time spent handling items.
ANALYTICS_SHRINKAGE = env.float("ANALYTICS_SHRINKAGE", default=0.3)
ANALYTICS_OCCUPANCY = env.float("ANALYTICS_OCCUPANCY", default=0.85)
ANALYTICS_SHIFT_HOURS = env.float("ANALYTICS_SHIFT_HOURS", default=8)
# Real-time queues (SLA up to one hour) are staffed for this share picked up within the SLA, open this long a day.
ANALYTICS_SERVICE_LEVEL = env.float("ANALYTICS_SERVICE_LEVEL", default=0.9)
ANALYTICS_HOURS_OPEN = env.float("ANALYTICS_HOURS_OPEN", default=24)

# --- Logging: structured enough to grep, and never the content of an item -----------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # The openai client logs request bodies (item text) at DEBUG: keep it and its HTTP stack quiet.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}
