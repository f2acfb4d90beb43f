"""Where the labelled moderation set lives: every reader (tests, drills, benchmarks) goes through this module."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# The OpenAI moderation set (MIT), shipped with the scoring app: a fresh clone needs nothing beside it.
LABELLED_SET = ROOT / "routing" / "scoring" / "seed" / "openai-moderation-samples-1680.jsonl.gz"
# The name `labeled_import --dataset` records it under.
LABELLED_SET_NAME = "openai-moderation-1680"


def labelled_rows(path: Path = LABELLED_SET) -> list[dict[str, Any]]:
    """Every row of the set (``prompt`` and one 0/1 field per category); a clear error when it is missing."""
    if not path.exists():
        raise FileNotFoundError(f"the labelled set is missing: {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def seed_slice_rows(per_category: int = 12, negatives: int = 120, path: Path = LABELLED_SET) -> list[dict[str, Any]]:
    """A small, deterministic slice of the set with ``per_category`` positives of every category (enough for
    the local model to learn each one) and ``negatives`` rows positive for none: tests train on it in seconds."""
    rows = labelled_rows(path)
    keys = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
    chosen: dict[int, None] = {}
    for key in keys:
        chosen.update(dict.fromkeys([i for i, r in enumerate(rows) if r.get(key) == 1][:per_category]))
    chosen.update(dict.fromkeys([i for i, r in enumerate(rows) if not any(r.get(k) == 1 for k in keys)][:negatives]))
    return [rows[i] for i in sorted(chosen)]
