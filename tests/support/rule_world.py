"""The rule sets the benchmarks route with, and the world they need: a realistic 50-rule intake draft (8 tag
rules, 42 deciding rules most of which a benign item fails) and the 7-rule active version it is compared with,
over the demo world's policies, actions and queues plus a few more queues.

bench/rules.py and bench/e2e.py time them; tests/routing/test_rules_bench_set.py checks that every rule is one the
editor accepts and that compiled, interpreted and vectorized evaluation agree on them. Django must be set up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Queues the rules route to, beside the demo world's (fixtures.demo_world.QUEUES).
EXTRA_QUEUES = [
    ("violence", "Violence & graphic content"),
    ("adult-content", "Adult content"),
    ("dm-safety", "Direct-message reports"),
    ("marketplace", "Marketplace trust"),
    ("live", "Live & stories"),
    ("vip", "High-reach accounts"),
    ("lang-pt", "Portuguese reports"),
    ("lang-es", "Spanish reports"),
    ("lang-de", "German reports"),
    ("lang-ja", "Japanese reports"),
    ("eu-dsa", "EU notices (DSA)"),
]


@dataclass(frozen=True)
class RuleText:
    """One rule as policy staff would write it. ``target``: the queue (route, escalate, an auto-action's
    fallback); for an auto-action also ``policy``/``enforcement``/``cap``; for a tag rule ``tags``."""

    name: str
    action: str
    condition: str
    target: str = ""
    policy: str = ""
    enforcement: str = ""
    cap: int | None = None
    priority: int = 0
    tags: tuple[str, ...] = ()


def rules_of(text: str) -> list[RuleText]:
    """Rules written one a line, ``action name option=value …: condition``; an indented line continues the one
    before."""
    lines: list[str] = []
    for line in text.strip().splitlines():
        if line.startswith(" "):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    rules = []
    for line in lines:
        head, condition = line.split(": ", 1)
        action, name, *options = head.split()
        o = dict(option.split("=", 1) for option in options)
        rules.append(
            RuleText(
                name,
                action,
                condition,
                target=o.get("queue", ""),
                policy=o.get("policy", ""),
                enforcement=o.get("enforce", ""),
                cap=int(o["cap"]) if "cap" in o else None,
                priority=int(o.get("priority", 0)),
                tags=tuple(o["tags"].split(",")) if "tags" in o else (),
            )
        )
    return rules


# The draft under test: 8 tag rules (all evaluated on every item) and 42 deciding rules, most of which a benign
# item fails, so the typical item is checked against every rule and lands in the default queue.
DRAFT_RULES = rules_of(
    """
tag tag-verified tags=verified-author: metadata.verified == true
tag tag-high-reach tags=high-reach: metadata.followers >= 100000
tag tag-repeat-offender tags=repeat-offender: author.prior_violations >= 3
tag tag-mass-reported tags=mass-reported: report_count >= 10
tag tag-new-account tags=new-account: metadata.account_age_days < 7
tag tag-civic tags=civic: text icontains "election" or text icontains "ballot"
tag tag-dm-sexual tags=dm-sexual: surface == "dm" and score.sexual >= 0.3
tag tag-link tags=has-link: text contains "http://" or text contains "https://"
escalate violent-hate-threat queue=tier-2: score.hate_threatening >= 0.85 or (score.hate >= 0.9 and score.violence
    >= 0.8)
escalate threat-high-reach queue=tier-2 priority=30: score.violence >= 0.85 and metadata.followers >= 100000
route cs-adjacent-dm queue=child-safety priority=50: score.sexual_minors >= 0.25 and surface in ["dm", "comment"]
route cs-adjacent-report queue=child-safety priority=50: kind == "user_report" and score["sexual/minors"] >= 0.15
escalate self-harm-crisis queue=self-harm priority=60: score.self_harm >= 0.8 or text icontains "kill myself" or
    text icontains "end it all"
auto_action self-harm-support queue=self-harm policy=self-harm enforce=support-resources cap=2000: score.self_harm >=
    0.6 and score.self_harm < 0.8 and not kind == "user_report" and author.prior_violations == 0
route self-harm-review queue=self-harm priority=20: score.self_harm >= 0.4
route graphic-news queue=tier-2: score.violence_graphic >= 0.7 and metadata.newsworthy == true
auto_action graphic-violence-screen queue=violence policy=graphic-violence enforce=restrict-reach cap=5000:
    score.violence_graphic >= 0.95 and surface in ["post", "story"]
route graphic-violence queue=violence: score.violence_graphic >= 0.6
auto_action threat-repeat-remove queue=violence policy=violent-threats enforce=remove cap=1000: score.violence >=
    0.97 and author.prior_violations >= 2 and not metadata.verified == true
route violent-threats queue=violence priority=10: score.violence >= 0.7 or (kind == "user_report" and score.violence
    >= 0.5)
auto_action hate-remove queue=hate-harassment policy=hateful-conduct enforce=remove cap=3000: score.hate >= 0.96 and
    language in ["en", "es", "pt-BR", "de"] and report_count >= 1
route hate-repeat queue=hate-harassment priority=20: score.hate >= 0.6 and author.prior_violations >= 2
route hate queue=hate-harassment: score.hate >= 0.75
route hate-reported queue=hate-harassment: kind == "user_report" and score.hate >= 0.45
auto_action harassment-dm-warn queue=dm-safety policy=harassment enforce=warn cap=2000: score.harassment >= 0.95 and
    surface == "dm" and report_count >= 2
escalate harassment-pile-on queue=tier-2 priority=20: score.harassment >= 0.7 and report_count >= 20
route harassment queue=hate-harassment: score.harassment >= 0.8 or (score.harassment >= 0.6 and surface in
    ["comment", "dm"])
route harassment-keywords queue=hate-harassment: text icontains "kys" or text icontains "kill yourself"
auto_action adult-screen queue=adult-content policy=adult-sexual enforce=restrict-reach cap=10000: score.sexual >=
    0.97 and surface in ["post", "story", "profile"] and not metadata.verified == true
route sexual-solicitation queue=adult-content priority=10: score.sexual >= 0.7 and (text icontains "dm me" or text
    icontains "telegram" or text icontains "onlyfans")
route sexual queue=adult-content: score.sexual >= 0.85
route sexual-dm-report queue=adult-content: surface == "dm" and kind == "user_report" and score.sexual >= 0.4
auto_action crypto-scam-remove queue=fraud-spam policy=fraud-scams enforce=remove cap=5000: (text icontains "double
    your money" or text icontains "crypto giveaway") and metadata.account_age_days < 30
route scam-policy-score queue=fraud-spam: score.policy_fraud_scams >= 0.8
auto_action spam-policy-score queue=fraud-spam policy=spam enforce=restrict-reach cap=20000: score.policy_spam >= 0.9
    and not metadata.verified == true
route scam-keywords queue=fraud-spam: text icontains "whatsapp me" or text icontains "guaranteed return" or text
    icontains "investment opportunity"
route spam-links-new-account queue=fraud-spam: metadata.account_age_days < 2 and text contains "https://" and
    surface in ["comment", "dm"]
route marketplace-scam queue=marketplace: source == "marketplace" and (text icontains "western union" or text
    icontains "gift card" or report_count >= 3)
escalate mass-reported queue=tier-2 priority=40: report_count >= 25
route reported-vip queue=vip priority=30: kind == "user_report" and metadata.followers >= 500000
route verified-high-risk queue=vip: metadata.verified == true and (score.hate >= 0.5 or score.harassment >= 0.5 or
    score.violence >= 0.5)
route repeat-offender queue=tier-2: author.prior_violations >= 5 and (score.hate >= 0.3 or score.harassment >= 0.3
    or score.violence >= 0.3 or score.sexual >= 0.3)
route reported-dm queue=dm-safety: kind == "user_report" and surface == "dm"
route live-risk queue=live: source == "live" and (score.hate >= 0.4 or score.violence >= 0.4 or score.sexual >= 0.5)
route lang-pt-reports queue=lang-pt: language == "pt-BR" and kind == "user_report"
route lang-es-reports queue=lang-es: language in ["es", "es-MX"] and kind == "user_report"
route lang-de-reports queue=lang-de: language == "de" and (kind == "user_report" or metadata.country in ["DE", "AT",
    "CH"] and score.hate >= 0.3)
route lang-ja-reports queue=lang-ja: language == "ja" and kind == "user_report"
route eu-notice queue=eu-dsa priority=10: metadata.country in ["DE", "FR", "ES", "IT", "NL", "PL"] and report_count
    >= 5
route unscored-reports queue=general priority=10: not scored and kind == "user_report"
"""
)
# The active version the draft is compared with: a few broad thresholds.
BASELINE_RULES = rules_of(
    """
route hate queue=hate-harassment: score.hate >= 0.8
route harassment queue=hate-harassment: score.harassment >= 0.8
route self-harm queue=self-harm priority=20: score.self_harm >= 0.5
route violence queue=violence: score.violence >= 0.8 or score.violence_graphic >= 0.8
route sexual queue=adult-content: score.sexual >= 0.9
escalate mass-reported queue=tier-2 priority=40: report_count >= 25
route crypto-scam queue=fraud-spam: text icontains "double your money"
"""
)


@dataclass
class World:
    queues: dict[str, Any]
    policies: dict[str, Any]
    actions: dict[str, Any]
    reviewer: Any
    draft: Any
    baseline: Any


def world_create() -> World:
    """Actions, policies and queues of the demo world plus the bench's queues; a reviewer; both rule sets."""
    from fixtures.demo_world import ACTIONS, POLICIES, QUEUES
    from ops_platform.core.models import EnforcementAction, Policy, User
    from queues.models import Queue
    from routing.models import Rule, RuleSet, RuleSetKind, RuleSetStatus
    from routing.rules.lifecycle import RuleData, rule_validate

    actions = {
        slug: EnforcementAction.objects.create(slug=slug, name=name, strength=strength, description=description)
        for slug, name, strength, description in ACTIONS
    }
    policies = {}
    for spec in POLICIES:
        policy = Policy.objects.create(
            slug=spec.slug,
            name=spec.name,
            severity=spec.severity,
            guidelines=spec.guidelines,
            classifier_categories=[str(c) for c in spec.categories],
            human_review_only=spec.human_review_only,
        )
        policy.enforcement_actions.set([actions["no-action"], *(actions[a] for a in spec.actions)])
        policies[spec.slug] = policy
    queues = {
        spec.slug: Queue.objects.create(
            slug=spec.slug,
            name=spec.name,
            sla=timedelta(hours=spec.sla_hours),
            is_default_intake=spec.is_default_intake,
            is_sensitive=spec.is_sensitive,
            is_restricted=spec.is_restricted,
        )
        for spec in QUEUES
    }
    queues.update({slug: Queue.objects.create(slug=slug, name=name) for slug, name in EXTRA_QUEUES})
    reviewer = User.objects.create_user(username="bench.reviewer")
    author = User.objects.create_user(username="bench.policy")

    def rule_set(version: int, status: str, texts: list[RuleText], **extra: Any) -> Any:
        rs = RuleSet.objects.create(
            kind=RuleSetKind.INTAKE,
            version=version,
            status=status,
            title=f"bench v{version}",
            default_queue=queues["general"],
            created_by=author,
            **extra,
        )
        rules = []
        for position, t in enumerate(texts, start=1):
            queue, policy = queues[t.target].pk if t.target else None, policies[t.policy].pk if t.policy else None
            data = RuleData(t.name, t.condition, t.action, queue_id=queue, priority=t.priority, policy_id=policy)
            data.enforcement_action_id = actions[t.enforcement].pk if t.enforcement else None
            data.daily_cap, data.tags = t.cap, list(t.tags)
            rule_validate(RuleSetKind.INTAKE, data)  # every rule is one the editor would accept
            rules.append(Rule(rule_set=rs, position=position, **asdict(data)))
        Rule.objects.bulk_create(rules)
        return rs

    now = datetime.now(UTC)
    baseline = rule_set(1, RuleSetStatus.ACTIVE, BASELINE_RULES, activated_at=now, activated_by=author)
    draft = rule_set(2, RuleSetStatus.DRAFT, DRAFT_RULES, based_on=baseline)
    return World(queues, policies, actions, reviewer, draft, baseline)
