"""The slices that explain an alert.

Causes of a rate change (mix-and-rate decomposition). With weights n (1/inclusion probability for QA samples,
1 per appeal), hits k, the overall rate R = K/N = Σ_s (n_s/N)·(k_s/n_s) over the slices s of any one dimension,
so the change from baseline b to window w splits exactly into per-slice contributions::

    contribution_s = n_w,s/N_w · r_w,s - n_b,s/N_b · r_b,s  ( = k_w,s/N_w - k_b,s/N_b ),  Σ_s contribution_s = R_w - R_b

and each contribution further into a rate effect p̄_s·(r_w,s - r_b,s) and a mix effect r̄_s·(p_w,s - p_b,s), with
p the slice's share of the weight and p̄, r̄ the two periods' means (a slice absent from a period takes the other
period's rate). Slices of every dimension are ranked together by their excess contribution, contribution_s -
p_w,s·(R_w - R_b): how much more of the change the slice carries than its share of the volume would. A slice that
is the whole population (every item in one language) carries all the change and explains none of it; the
excesses of one dimension add up to zero. Where two top slices of different dimensions (surface=comments,
vendor=acme) overlap so that their intersection alone carries at least :data:`ABSORB` of each one's contribution,
the intersection replaces them: it is the more precise explanation.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from analytics.alerts.observations import DIMENSIONS, decisions_by_queue_vendor

TOP_CAUSES = 5
# Top single slices tried pairwise for a more precise intersection.
PAIR_CANDIDATES = 6
ABSORB = 0.8
# The vendors' usual throughput, against which a drop is measured (SLA and backlog causes).
USUAL_THROUGHPUT = timedelta(days=7)


def weighted_rate(frame: pd.DataFrame) -> float:
    """The weighted share of hits in observations (0 when there are none)."""
    total = frame["weight"].sum()
    return float((frame["weight"] * frame["hit"]).sum() / total) if total else 0.0


def rounded(x: float) -> float:
    return round(float(x), 6)


def _slice_figures(win: pd.DataFrame, base: pd.DataFrame, n_w: float, n_b: float, delta: float) -> dict[str, float]:
    nw, kw = win["weight"].sum(), (win["weight"] * win["hit"]).sum()
    nb, kb = base["weight"].sum(), (base["weight"] * base["hit"]).sum()
    p_w, p_b = nw / n_w if n_w else 0.0, nb / n_b if n_b else 0.0
    r_w = kw / nw if nw else np.nan
    r_b = kb / nb if nb else np.nan
    r_w_eff = r_b if np.isnan(r_w) else r_w
    r_b_eff = r_w_eff if np.isnan(r_b) else r_b
    contribution = (kw / n_w if n_w else 0.0) - (kb / n_b if n_b else 0.0)
    return {
        "window_rate": rounded(0 if np.isnan(r_w) else r_w),
        "baseline_rate": rounded(0 if np.isnan(r_b) else r_b),
        "window_share": rounded(p_w),
        "baseline_share": rounded(p_b),
        "window_volume": len(win),
        "contribution": rounded(contribution),
        "excess_contribution": rounded(contribution - p_w * delta),
        "rate_effect": rounded((p_w + p_b) / 2 * (r_w_eff - r_b_eff)),
        "mix_effect": rounded((r_w_eff + r_b_eff) / 2 * (p_w - p_b)),
    }


def slice_contributions(window: pd.DataFrame, baseline: pd.DataFrame, dim: str) -> pd.DataFrame:
    """Every value of one dimension: its contribution k_w,s/N_w - k_b,s/N_b (they add up to R_w - R_b) and its
    share of the window's weight."""
    n_w, n_b = window["weight"].sum(), baseline["weight"].sum()
    k_w = (window["weight"] * window["hit"]).groupby(window[dim]).sum() / n_w
    k_b = (baseline["weight"] * baseline["hit"]).groupby(baseline[dim]).sum() / n_b if n_b else pd.Series()
    share = window["weight"].groupby(window[dim]).sum() / n_w
    frame = pd.DataFrame({"contribution": k_w.sub(k_b, fill_value=0)})
    frame["window_share"] = share.reindex(frame.index, fill_value=0.0)
    return frame


def rate_change_causes(window: pd.DataFrame, baseline: pd.DataFrame, *, top: int = TOP_CAUSES) -> list[dict[str, Any]]:
    """The slices (of any dimension, or two overlapping ones) that explain most of a rate's rise."""
    n_w, n_b = window["weight"].sum(), baseline["weight"].sum()
    if not n_w:
        return []
    delta = weighted_rate(window) - weighted_rate(baseline)
    singles: list[dict[str, Any]] = []
    for dim in DIMENSIONS:
        frame = slice_contributions(window, baseline, dim)
        frame["excess"] = frame["contribution"] - frame["window_share"] * delta
        frame = frame[(frame["contribution"] > 0) & (frame["excess"] > 0)].sort_values("excess", ascending=False)
        for value, row in frame.head(top).iterrows():
            singles.append({"slice": {dim: str(value)}, "contribution": float(row["contribution"])})
    singles.sort(key=lambda c: c["contribution"], reverse=True)

    def mask(frame: pd.DataFrame, slice_: dict[str, str]) -> pd.Series:
        m = pd.Series(True, index=frame.index)
        for dim, value in slice_.items():
            m &= frame[dim] == value
        return m

    causes: list[dict[str, Any]] = []
    absorbed: set[int] = set()
    candidates = singles[:PAIR_CANDIDATES]
    for (i, a), (j, b) in combinations(enumerate(candidates), 2):
        if set(a["slice"]) & set(b["slice"]):
            continue
        both = {d: v for d in DIMENSIONS for v in [a["slice"].get(d) or b["slice"].get(d)] if v}
        figures = _slice_figures(window[mask(window, both)], baseline[mask(baseline, both)], n_w, n_b, delta)
        if figures["contribution"] >= ABSORB * max(a["contribution"], b["contribution"]):
            causes.append({"slice": both, **figures})
            absorbed |= {i, j}
    for i, single in enumerate(singles):
        if i not in absorbed:
            s = single["slice"]
            causes.append(
                {"slice": s, **_slice_figures(window[mask(window, s)], baseline[mask(baseline, s)], n_w, n_b, delta)}
            )
    # One intersection can come from several pairs of the same parents only once.
    unique = {tuple(sorted(c["slice"].items())): c for c in causes}
    ranked = sorted(unique.values(), key=lambda c: c["excess_contribution"], reverse=True)[:top]
    for cause in ranked:
        cause["dimension"] = "+".join(cause["slice"])
        cause["value"] = " / ".join(cause["slice"].values())
        cause["share_of_change"] = rounded(cause["contribution"] / delta) if delta else None
    return ranked


def vendor_throughput_causes(queues: list[str], *, now: datetime, lookback: timedelta) -> list[dict[str, Any]]:
    """Vendors deciding fewer items per hour in ``queues`` over ``lookback`` than over their usual week."""
    if not queues:
        return []
    current = decisions_by_queue_vendor(now - lookback, now, queues=queues).groupby("vendor")["n"].sum()
    usual = decisions_by_queue_vendor(now - lookback - USUAL_THROUGHPUT, now - lookback, queues=queues)
    usual_rate = usual.groupby("vendor")["n"].sum() / (USUAL_THROUGHPUT / timedelta(hours=1))
    current_rate = current / (lookback / timedelta(hours=1))
    drop = usual_rate.sub(current_rate, fill_value=0).sort_values(ascending=False)
    return [
        {
            "dimension": "vendor",
            "value": str(vendor),
            "slice": {"vendor": str(vendor)},
            "throughput_per_hour": rounded(current_rate.get(vendor, 0.0)),
            "usual_per_hour": rounded(usual_rate.get(vendor, 0.0)),
            "contribution": rounded(d),
        }
        for vendor, d in drop.items()
        if d > 0
    ][:TOP_CAUSES]
