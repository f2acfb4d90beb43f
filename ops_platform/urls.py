"""Root URLs: the only kernel module that imports the apps."""

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace, csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from analytics.exporter import views as exporter_views
from analytics.urls import api_urlpatterns as metrics_api_urlpatterns
from investigation.urls import api_urlpatterns as search_api_urlpatterns
from ops_platform.core import sso_views
from ops_platform.core import views as core_views
from qa.urls import api_urlpatterns as review_api_urlpatterns
from routing.intake.urls import dead_letter_urlpatterns

handler400 = "ops_platform.core.views.bad_request"
handler404 = "ops_platform.core.views.not_found"
handler500 = "ops_platform.core.views.server_error"

# Swagger UI and Redoc are third-party single-page renderers that style their elements at run time (Redoc
# inserts <style> elements). On those two pages only, style-src also allows inline styles; scripts stay
# 'self' (the Swagger UI start-up script is served from its own URL, not inline). Nothing on them shows
# client content: they render our own OpenAPI schema.
api_reference_csp = csp_update({"style-src": [UNSAFE_INLINE]})
# Redoc also runs its search in a worker made from a blob: URL, and its footer shows a logo from Redocly's CDN:
# worker-src allows the one, img-src (only this page's own and data: images) keeps the other from loading.
redoc_csp = csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})
redoc_images = csp_replace({"img-src": [SELF, "data:"]})  # should anything else try

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("metrics", exporter_views.metrics, name="prometheus-metrics"),
    # Browsers ask for /favicon.ico where a page names no icon (the API reference pages): the same icon.
    path("favicon.ico", core_views.favicon, name="favicon"),
    path("accounts/login/", sso_views.SignInView.as_view(), name="login"),
    path("accounts/sso/start", sso_views.SsoStartView.as_view(), name="sso-start"),
    path("accounts/sso/callback", sso_views.SsoCallbackView.as_view(), name="sso-callback"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("queues.accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/metrics/", include(metrics_api_urlpatterns)),
    path("api/v1/", include("routing.intake.urls")),
    path("api/v1/", include("queues.retention.urls")),
    path("api/v1/", include(review_api_urlpatterns)),
    path("api/v1/", include(search_api_urlpatterns)),
    path("analytics/", include("analytics.urls")),
    path("scoring/", include("routing.scoring.urls")),
    path("scoring/dead-letters/", include(dead_letter_urlpatterns)),
    path("media/", include("routing.scoring.media.urls")),
    path("rules/", include("routing.rules.urls")),
    path("review/", include("queues.urls")),
    path("qa/", include("qa.urls")),
    path("investigation/", include("investigation.urls")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="api-schema",
    ),
    path(
        "api/docs/",
        api_reference_csp(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema", authentication_classes=[], permission_classes=[])
        ),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        redoc_images(
            redoc_csp(
                SpectacularRedocView.as_view(url_name="api-schema", authentication_classes=[], permission_classes=[])
            )
        ),
        name="api-redoc",
    ),
    path("api/redoc/redoc.standalone.js", core_views.redoc_bundle, name="api-redoc-bundle"),
]
