"""Analytics' own tables: rollups maintained by periodic tasks, and alerts. Everything else it only reads."""

from analytics.models.alerts import *  # noqa: F403
from analytics.models.classifiers import *  # noqa: F403
from analytics.models.metrics import *  # noqa: F403
from analytics.models.operations import *  # noqa: F403
from analytics.models.quality import *  # noqa: F403
