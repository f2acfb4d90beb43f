"""``manage.py classifier_evaluate``: per-category AUPRC, ROC AUC and recall at the target precision, each with
a bootstrap 95% interval, for the local model (cross-validated, trained on one file and tested on another, or
the active version as deployed) or another backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.models import Backend
from routing.scoring.evaluation import (
    Evaluation,
    default_thresholds,
    figures_from_scores,
    overlap_drop,
    scores_active_model,
    scores_from_backend,
    scores_train_test,
)
from routing.scoring.metrics import BOOTSTRAP_RESAMPLES, Estimate, IntervalFigures
from routing.scoring.training import LabeledFileError, cross_validate, labeled_file_read


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _estimate(estimate: Estimate, too_few: bool) -> str:
    if estimate.value is None:
        return f"{'—':<21}"
    if too_few or estimate.low is None or estimate.high is None:
        return f"{estimate.value:.3f} (too few)    "
    return f"{estimate.value:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


class Command(BaseCommand):
    help = (
        "Measure a scorer on labelled data (JSONL[.gz] in OpenAI's evaluation-set format, or CSV): per category "
        "and overall (any violation, scored by the highest category) AUPRC, ROC AUC and recall at the target "
        "precision, each with a bootstrap 95% interval ('too few' under 10 positives). Default: stratified "
        "k-fold cross-validation of the local model on FILE, or on the shipped seed set without FILE. "
        "--train A --test B: train on A, measure on B's texts not in A. --model active --test B: the active "
        "deployed version on B, nothing retrained. --backend: score FILE through another backend."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", help="Labelled file (default: the shipped seed set).")
        parser.add_argument("--train", help="Train the local model on this file ...")
        parser.add_argument("--test", help="... and measure on this one (texts also in --train are dropped).")
        parser.add_argument("--model", choices=["active"], help="Score --test with the active local version.")
        parser.add_argument(
            "--backend",
            default=Backend.LOCAL,
            choices=[Backend.LOCAL, Backend.OPENAI_MODERATION, Backend.OPENAI_POLICY],
        )
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES, help="Bootstrap resamples.")
        parser.add_argument(
            "--target-precision",
            type=float,
            default=None,
            help="Precision at which to report recall (default: settings.SCORING_TARGET_PRECISION).",
        )
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")

    def _read(self, path: str) -> Any:
        try:
            return labeled_file_read(path)
        except (LabeledFileError, OSError) as exc:
            raise CommandError(str(exc)) from exc

    def handle(self, *args: Any, **options: Any) -> None:
        target = options["target_precision"] or settings.SCORING_TARGET_PRECISION
        if not 0 < target <= 1:
            raise CommandError("--target-precision must be in (0, 1]")
        if options["folds"] < 2:
            raise CommandError("--folds must be at least 2")
        if options["resamples"] < 100:
            raise CommandError("--resamples must be at least 100")
        if options["train"] and options["model"]:
            raise CommandError("--train retrains and --model active does not: give one of them")
        if (options["train"] or options["model"]) and not options["test"]:
            raise CommandError("--train and --model active need --test FILE")
        if options["test"] and not (options["train"] or options["model"]):
            raise CommandError("--test needs --train FILE or --model active")
        if (options["train"] or options["model"]) and (options["path"] or options["backend"] != Backend.LOCAL):
            raise CommandError("--train/--model measure the local model on --test: give no FILE and no --backend")
        notes: list[str] = []
        backend = options["backend"]
        if options["model"]:
            data = self._read(options["test"])
            try:
                scores, label = scores_active_model(data)
            except LabeledFileError as exc:
                raise CommandError(str(exc)) from exc
            method = f"active version {label} on {Path(options['test']).name}, not retrained"
        elif options["train"]:
            train = self._read(options["train"])
            data, dropped = overlap_drop(train, self._read(options["test"]))
            if not data.texts:
                raise CommandError("every --test text is also in --train: nothing unseen to measure on")
            notes.append(f"{dropped} test texts also in the training file were dropped.")
            scores = scores_train_test(train, data, seed=options["seed"])
            method = (
                f"trained on {Path(options['train']).name} ({len(train.texts)} texts), "
                f"tested on {Path(options['test']).name} ({len(data.texts)} unseen texts)"
            )
        else:
            path = options["path"] or settings.SCORING_SEED_SET
            data = self._read(path)
            if backend == Backend.LOCAL:
                scores = cross_validate(data, folds=options["folds"], seed=options["seed"])
                method = f"{options['folds']}-fold stratified cross-validation on {Path(path).name}"
            else:
                scores, method = scores_from_backend(data, backend), f"{Path(path).name} scored through the backend"
        result = figures_from_scores(
            backend,
            method,
            data,
            scores,
            target_precision=target,
            thresholds=default_thresholds(),
            resamples=options["resamples"],
            seed=options["seed"],
        )
        result.notes.extend(notes)
        if options["json"]:
            self.stdout.write(json.dumps(self._payload(result), indent=2))
        else:
            self._table(result, target)

    @staticmethod
    def _payload(result: Evaluation) -> dict[str, Any]:
        return {
            "backend": result.backend,
            "method": result.method,
            "scored": result.scored,
            "total": result.total,
            "notes": result.notes,
            "categories": {
                c: {**f.as_dict(), "at_threshold": dict(zip(("threshold", "precision", "recall"), t, strict=True))}
                for c, f in result.figures.items()
                for t in [result.at_threshold[c]]
            },
            "overall": result.overall.as_dict() if result.overall else None,
        }

    def _table(self, result: Evaluation, target: float) -> None:
        resamples = next((f.resamples for f in result.figures.values() if f.resamples), 0)
        self.stdout.write(f"{result.backend}: {result.method}; {result.scored} of {result.total} texts scored.")
        for note in result.notes:
            self.stdout.write(note)
        self.stdout.write(
            f"95% intervals: {resamples or 'no'} bootstrap resamples; 'too few' under 10 positives (or negatives)."
        )
        header = (
            f"{'category':<18}{'n':>6}{'pos':>5}{'prev':>7}  {'AUPRC [95% CI]':<23}{'ROC AUC [95% CI]':<23}"
            f"{f'recall at P>={target:g} [95% CI]':<27}{'thr':>6}"
        )
        self.stdout.write(header)
        rows: list[tuple[str, IntervalFigures]] = sorted(result.figures.items())
        if result.overall:
            rows.append(("overall (any)", result.overall))
        for name, f in rows:
            self.stdout.write(
                f"{name:<18}{f.n:>6}{f.positives:>5}{_f(f.prevalence):>7}  {_estimate(f.auprc, f.too_few):<23}"
                f"{_estimate(f.roc_auc, f.too_few):<23}{_estimate(f.recall_at_target, f.too_few):<27}"
                f"{_f(f.threshold_for_target, 2):>6}"
            )
