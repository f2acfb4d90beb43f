"""``manage.py classifier_train``: fit a new local-model version from verified and imported labels."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops_platform.core.errors import NotPermitted
from routing.scoring.registry import model_promote, promotion_verdict
from routing.scoring.training import LabeledFileError, model_train


class Command(BaseCommand):
    help = (
        "Train a local-model version on the shipped seed set plus QA-verified/adjudicated labels and imported "
        "labeled sets, measure it on a held-out share and by cross-validation, register it, and with --promote "
        "make it active if it is not worse than the active one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--holdout", type=float, default=0.2, help="Share of examples held out (default 0.2).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--folds", type=int, default=5, help="Cross-validation folds for the model card's figures (0: none)."
        )
        parser.add_argument("--promote", action="store_true", help="Promote when the held-out AUPRC is not worse.")
        parser.add_argument("--actor", default="manage.py classifier_train", help="Who to name in the audit log.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            version = model_train(
                actor=options["actor"], holdout=options["holdout"], seed=options["seed"], folds=options["folds"]
            )
        except LabeledFileError as exc:
            raise CommandError(str(exc)) from exc
        data = version.training_data
        self.stdout.write(
            f"{version.label}: {data['train']} training and {data['held_out']} held-out examples "
            f"from {', '.join(f'{k} ({v})' for k, v in sorted(data['sources'].items()))}"
        )
        for category, m in sorted(version.metrics.items()):
            auprc = "—" if m["auprc"] is None else f"{m['auprc']:.3f}"
            self.stdout.write(
                f"  {category:<18} held-out AUPRC {auprc}  (prevalence {m['prevalence']:.3f}, n={m['n']})"
            )
        cross_validated = data.get("cross_validated") or {}
        for category, m in sorted((cross_validated.get("categories") or {}).items()):
            auprc = m["intervals"]["auprc"]
            interval = "too few" if m["intervals"]["too_few"] else f"[{auprc['low']:.3f}, {auprc['high']:.3f}]"
            self.stdout.write(
                f"  {category:<18} {cross_validated['folds']}-fold AUPRC {auprc['value']:.3f} {interval}"
                f"  (positives {m['positives']} of {m['n']})"
            )
        _, why = promotion_verdict(version)
        if not options["promote"]:
            self.stdout.write(f"Not promoted (no --promote). Verdict if promoted: {why}.")
            return
        try:
            model_promote(candidate=version, actor=options["actor"], reason=why)
        except NotPermitted as exc:
            self.stdout.write(self.style.WARNING(str(exc)))
            return
        self.stdout.write(self.style.SUCCESS(f"{version.label} is now active ({why})."))
