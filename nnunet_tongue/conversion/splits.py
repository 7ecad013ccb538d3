"""Which cases are held out (imagesTs/labelsTs), and K-fold cross-validation splits over the rest."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from nnunet_tongue.conversion.report import ERROR, WARNING, Problem

TRAIN = "train"
TEST = "test"
#: seed of nnU-Net's own default 5-fold split, used for --folds as well
FOLD_SEED = 12345


def read_split_file(path: Path) -> tuple[list[str] | None, list[str]] | Problem:
    """``(train ids or None, test ids)`` from a JSON object with a ``"test"`` list (and optionally a
    ``"train"`` list), such as biohit_split.json; a :class:`Problem` when it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Problem(ERROR, str(path), f"split file not readable ({exc})", "check the path and that it is JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("test"), list) or not isinstance(doc.get("train", []), list):
        return Problem(ERROR, str(path), 'split file needs a "test" list of ids (and may have a "train" list)',
                       'write it as {"train": [...], "test": [...]}')
    train = doc.get("train")
    return ([str(i) for i in train] if train is not None else None), [str(i) for i in doc["test"]]


def assign_subsets(ids: list[tuple[str, str]], test_ids: list[str], train_ids: list[str] | None,
                   origin: str) -> tuple[list[str], list[Problem]]:
    """Subset (TRAIN or TEST) of each ``(source id, case id)``; ids match either (case-insensitive).

    Test ids go to TEST, everything else to TRAIN. Ids that match no case, ids in both lists, and (with
    a train list) cases in neither list are reported; ``origin`` names where the ids came from.
    """
    lookup: dict[str, int] = {}
    for index, pair in enumerate(ids):
        for name in pair:
            lookup[_key(name)] = index
    problems: list[Problem] = []
    wanted: dict[str, set[int]] = {}
    for subset, listed in ((TEST, test_ids), (TRAIN, train_ids or [])):
        wanted[subset] = set()
        for name in dict.fromkeys(listed):
            if _key(name) in lookup:
                wanted[subset].add(lookup[_key(name)])
            else:
                problems.append(Problem(ERROR, origin, f"{subset} id '{name}' matches no case",
                                        "correct the id list, or add the case"))
    for index in sorted(wanted[TEST] & wanted[TRAIN]):
        problems.append(Problem(ERROR, origin, f"case '{ids[index][0]}' is listed as both train and test",
                                "list it once"))
    if train_ids is not None:
        for index in sorted(set(range(len(ids))) - wanted[TEST] - wanted[TRAIN]):
            problems.append(Problem(WARNING, origin,
                                    f"case '{ids[index][0]}' is in neither the train nor the test list: "
                                    "used for training", "add it to one of the lists"))
    return [TEST if i in wanted[TEST] else TRAIN for i in range(len(ids))], problems


def kfold_splits(train_case_ids: list[str], folds: int) -> list[dict[str, list[str]]]:
    """nnU-Net's own K-fold split (shuffled, seed 12345) over the training case ids, as in splits_final.json."""
    # imports scikit-learn: 1-2 s, only for --folds
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    splits = generate_crossval_split(sorted(train_case_ids), seed=FOLD_SEED, n_splits=folds)
    return [{part: [str(i) for i in ids] for part, ids in split.items()} for split in splits]


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()
