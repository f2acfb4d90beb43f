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
