"""Which of the photos a model gets wrong its quality flags point a user to.

    nnunet-tongue segment -i TEST_PHOTOS -o seg
    nnunet-tongue evaluate -p seg/masks -g TRUTH_MASKS -o report
    python benchmarks/flag_recall.py --segmented seg --evaluation report --name ntust [--json flags_ntust.json]

A photo counts as *wrong* when its Dice is below ``--below`` (90 %, the cross-dataset benchmark's target). Per flag
and for any flag: the photos it was raised on, the wrong photos among them, and the mean Dice of the photos with
and without a flag; then the wrong photos no flag was raised on, with their Dice. With ``--root-errors`` (the
``--json`` of ``benchmarks/root_errors.py`` on the same masks), also each one's Dice with the truth's root band put in
(what it would score had it drawn the root where the masks do) and how many of them reach ``--below`` so. No model
runs: it reads ``segment``'s JSON lines and ``evaluate``'s ``per_case.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

from bundled_model import report_dice

from nnunet_tongue.inference.segment import JSONL_NAME

BELOW = 90.0


def read_flags(segmented: Path) -> dict[str, list[str]]:
    """{photo name: flags raised} from a ``segment`` output folder."""
    with open(segmented / JSONL_NAME) as lines:
        return {row["name"]: row.get("flags", []) for row in map(json.loads, lines)}


def recall(dice: dict[str, float], flags: dict[str, list[str]], below: float = BELOW) -> dict[str, object]:
    """What the flags raised on the scored photos say about the photos scoring below ``below``."""
    missing = sorted(set(dice) - set(flags))
    if missing:
        raise ValueError(f"no segment line for {len(missing)} scored photo(s), e.g. {missing[0]}: segment and "
                         "evaluate different folders?")
    wrong = {case for case, d in dice.items() if d < below}
    flagged = {case for case in dice if flags[case]}
    names = sorted({flag for case in dice for flag in flags[case]})
    per_flag = {}
    for name in names:
        raised = {case for case in dice if name in flags[case]}
        per_flag[name] = {"raised": len(raised), "wrong_among_them": len(raised & wrong)}

    def mean(cases: set[str]) -> float | None:
        return round(float(np.mean([dice[c] for c in cases])), 2) if cases else None

    return {"n_photos": len(dice), "below": below, "wrong": len(wrong), "flagged": len(flagged),
            "wrong_flagged": len(wrong & flagged), "per_flag": per_flag,
            "dice_mean_flagged": mean(flagged), "dice_mean_unflagged": mean(set(dice) - flagged),
            "wrong_unflagged": {case: round(dice[case], 2) for case in sorted(wrong - flagged, key=dice.get)}}


def with_true_roots(result: dict[str, object], root_errors: dict[str, object]) -> dict[str, object]:
    """``result`` with the Dice with true roots of each wrong, unflagged photo and how many reach its threshold."""
    cases = root_errors["cases"]
    unflagged = {case: round(100 * cases[case]["dice_true_roots"], 2) for case in result["wrong_unflagged"]}
    return {**result, "wrong_unflagged_dice_true_roots": unflagged,
            "wrong_unflagged_reaching_below_with_true_roots": sum(d >= result["below"] for d in unflagged.values())}


def sentence(name: str, r: dict[str, object]) -> str:
    """One line for docs."""
    missed = r["wrong_unflagged"]
    return (f"{name} ({r['n_photos']} photos): {r['wrong']} below {r['below']:g}, {r['wrong_flagged']} of them "
            f"flagged; {r['flagged']} flagged in all"
            + (f" (mean Dice {r['dice_mean_flagged']}, the others {r['dice_mean_unflagged']})" if r["flagged"] else "")
            + "; " + ", ".join(f"{k} {v['wrong_among_them']}/{v['raised']}" for k, v in r["per_flag"].items())
            + (f"; unflagged below {r['below']:g}: Dice {min(missed.values()):.1f}–{max(missed.values()):.1f}"
               if missed else "")
            + (f", {r['wrong_unflagged_reaching_below_with_true_roots']} of them at or above it with true roots"
               if missed and "wrong_unflagged_dice_true_roots" in r else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segmented", type=Path, required=True, help="a `nnunet-tongue segment` output folder")
    p.add_argument("--evaluation", type=Path, required=True, help="a `nnunet-tongue evaluate` output folder")
    p.add_argument("--below", type=float, default=BELOW, help=f"Dice %% under which a photo is wrong ({BELOW:g})")
    p.add_argument("--name", default="test set", help="the set's name in the printed line")
    p.add_argument("--root-errors", type=Path, help="root_errors.py's --json for the same masks")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    result = recall(report_dice(args.evaluation), read_flags(args.segmented), args.below)
    if args.root_errors:
        result = with_true_roots(result, json.loads(args.root_errors.read_text()))
    print(sentence(args.name, result))
    if args.json:
        args.json.write_text(json.dumps({"date": date.today().isoformat(), **result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
