"""``manage.py classifier_evaluate FILE``: per-category AUPRC, prevalence, lift and operating points."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.models import Backend
from routing.scoring.evaluation import default_thresholds, evaluate_file
from routing.scoring.metrics import CategoryFigures
from routing.scoring.training import LabeledFileError, labeled_file_read


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


class Command(BaseCommand):
    help = (
        "Score a labeled file (JSONL[.gz] or CSV) and print per category: AUPRC, prevalence, lift, precision and "
        "recall at the configured thresholds, and the threshold reaching a target precision. For the local "
        "model this is stratified k-fold cross-validation on the file itself."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument(
            "--backend",
            default=Backend.LOCAL,
            choices=[Backend.LOCAL, Backend.OPENAI_MODERATION, Backend.OPENAI_POLICY],
        )
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--target-precision", type=float, default=0.9)
        parser.add_argument("--threshold", type=float, help="One threshold for every category (default: settings).")
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = labeled_file_read(options["path"])
        except (LabeledFileError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        thresholds = default_thresholds()
        if options["threshold"] is not None:
            thresholds = dict.fromkeys(thresholds, options["threshold"])
        result = evaluate_file(
            data,
            backend=options["backend"],
            folds=options["folds"],
            seed=options["seed"],
            target_precision=options["target_precision"],
            thresholds=thresholds,
        )
        if options["json"]:
            payload = {
                "backend": result.backend,
                "method": result.method,
                "scored": result.scored,
                "total": result.total,
                "categories": {c: f.as_dict() for c, f in result.figures.items()},
                "overall": result.overall.as_dict() if result.overall else None,
            }
            self.stdout.write(json.dumps(payload, indent=2))
            return
        target = options["target_precision"]
        self.stdout.write(f"{result.backend}: {result.method}; {result.scored} of {result.total} texts scored.")
        header = (
            f"{'category':<18}{'n':>6}{'pos':>6}{'prev':>7}{'AUPRC':>7}{'lift':>6}{'thr':>6}{'P@thr':>7}{'R@thr':>7}"
            f"{f'thr P>={target:g}':>11}{'R there':>8}"
        )
        self.stdout.write(header)
        rows: list[tuple[str, CategoryFigures]] = sorted(result.figures.items())
        if result.overall:
            rows.append(("overall (any)", result.overall))
        for name, f in rows:
            self.stdout.write(
                f"{name:<18}{f.n:>6}{f.positives:>6}{_f(f.prevalence):>7}{_f(f.auprc):>7}{_f(f.lift, 2):>6}"
                f"{_f(f.threshold, 2):>6}{_f(f.precision_at_threshold):>7}{_f(f.recall_at_threshold):>7}"
                f"{_f(f.threshold_for_target):>11}{_f(f.recall_at_target):>8}"
            )
