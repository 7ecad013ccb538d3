"""Per-case CSV, summary statistics and the text table of an evaluation."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from nnunet_tongue.evaluation.cases import name_list
from nnunet_tongue.evaluation.metrics import HIGHER_IS_BETTER, METRICS

#: Columns of per_case.csv, in order.
CSV_COLUMNS: tuple[str, ...] = ("case", *METRICS, "pred_pixels", "gt_pixels", "width", "height")
#: Decimals kept for metric values in the CSV and the JSON.
DECIMALS = 6


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    """One row per case, columns :data:`CSV_COLUMNS`."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: round(v, DECIMALS) if isinstance(v, float) else v for k, v in row.items()})


def rank_worst(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Rows from worst to best: lowest Dice first, ties broken by the larger HD95."""
    return sorted(rows, key=lambda row: (row["dice"], -row["hd95"]))


def case_metrics(row: dict[str, object]) -> dict[str, object]:
    """The case id and its metrics, rounded like the CSV."""
    return {"case": row["case"], **{metric: round(float(row[metric]), DECIMALS) for metric in METRICS}}


def metric_stats(rows: list[dict[str, object]], metric: str) -> dict[str, object]:
    """mean, sd (sample, ddof=1; 0 for one case), median, min, max and the worst case of one metric."""
    values = np.array([row[metric] for row in rows], dtype=float)
    worst = int(np.argmin(values) if HIGHER_IS_BETTER[metric] else np.argmax(values))
    stats = {
        "mean": values.mean(),
        "sd": values.std(ddof=1) if len(values) > 1 else 0.0,
        "median": np.median(values),
        "min": values.min(),
        "max": values.max(),
        "worst_value": values[worst],
    }
    return {**{k: round(float(v), DECIMALS) for k, v in stats.items()}, "worst_case": rows[worst]["case"]}


def empty_cases(rows: list[dict[str, object]]) -> dict[str, list[str]]:
    """Cases scored by the empty-mask conventions, by kind."""
    kinds = {
        "empty_prediction": lambda r: r["pred_pixels"] == 0 and r["gt_pixels"] > 0,
        "empty_ground_truth": lambda r: r["gt_pixels"] == 0 and r["pred_pixels"] > 0,
        "both_empty": lambda r: r["gt_pixels"] == 0 and r["pred_pixels"] == 0,
    }
    return {kind: [r["case"] for r in rows if test(r)] for kind, test in kinds.items()}


def write_json(summary: dict[str, object], path: Path) -> None:
    """Written whole or not at all (a temporary file, then renamed): its presence marks a finished report."""
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(temporary, path)


def format_summary(summary: dict[str, object]) -> str:
    """A short text table of the summary, for the terminal."""
    lines = [
        f"{summary['n_cases']} cases; distances in pixels",
        f"{'metric':<7} {'mean ± sd':>19} {'median':>9} {'min':>9} {'max':>9}  worst case",
    ]
    for metric in METRICS:
        s = summary["metrics"][metric]
        spread = f"{s['mean']:.4f} ± {s['sd']:.4f}"
        lines.append(
            f"{metric:<7} {spread:>19} {s['median']:>9.4f} {s['min']:>9.4f} {s['max']:>9.4f}"
            f"  {s['worst_case']} ({s['worst_value']:.4f})"
        )
    for kind, cases in summary["empty_masks"].items():
        if cases:
            lines.append(f"{kind.replace('_', ' ')}: {name_list(cases)}")
    if summary["skipped_without_prediction"]:
        lines.append(f"skipped (no prediction): {len(summary['skipped_without_prediction'])} ground-truth case(s)")
    return "\n".join(lines)
