"""``nnunet-tongue convert``: tongue photos + masks / LabelMe / BioHit -> nnU-Net raw dataset (``Dataset501_Tongue``).

Python API: :func:`convert_dataset`. Command line: :func:`main` (also ``python -m
nnunet_tongue.conversion.convert``). Rules and layouts: docs/conversion.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from nnunet_tongue.conversion.cases import ON_INVERTED, CaseOptions, CaseTask, convert_case
from nnunet_tongue.conversion.layouts import LAYOUTS, discover
from nnunet_tongue.conversion.naming import case_id
from nnunet_tongue.conversion.output import (
    Staging,
    check_target,
    dataset_folder_name,
    open_staging,
    resolve_output_root,
    write_cases_csv,
    write_dataset_json,
    write_report,
    write_splits,
)
from nnunet_tongue.conversion.report import ERROR, CaseRecord, ConversionError, ConversionReport, Problem
from nnunet_tongue.conversion.splits import TRAIN, assign_subsets, kfold_splits, read_split_file

__all__ = ["ConversionError", "ConversionReport", "convert_dataset", "main", "parse_mask_values"]


def convert_dataset(
    source: str | os.PathLike | None,
    output_root: str | os.PathLike | None = None,
    dataset_id: int = 501,
    dataset_name: str = "Tongue",
    *,
    layout: str = "auto",
    images: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    split_json: str | os.PathLike | None = None,
    test_ids: Iterable[str] | None = None,
    max_size: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    on_inverted: str = "fix",
    mask_values: dict[int, int] | str | None = None,
    clean_specks: int | None = None,
    folds: int | None = None,
    labelme_label: str = "tongue",
    dry_run: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Convert ``source`` into ``<output_root or $nnUNet_raw>/Dataset<id>_<name>``.

    Every case is checked and every problem collected; with any error nothing is written and
    :class:`ConversionError` (a ValueError carrying the report) is raised. Otherwise the dataset appears
    in one rename at the end (replacing an existing one only with ``overwrite``) and the report is returned.
    ``dry_run`` checks everything and writes nothing. Bad arguments raise a plain ValueError.
    """
    start = time.perf_counter()
    _check_arguments(dataset_id, dataset_name, layout, max_size, on_inverted, clean_specks, folds, split_json, test_ids)
    if isinstance(mask_values, str):
        mask_values = parse_mask_values(mask_values)
    if mask_values is not None and not set(mask_values.values()) <= {0, 1}:
        raise ValueError(f"mask values must map to label 0 or 1, got {mask_values}")
    root = resolve_output_root(output_root)
    folder_name = dataset_folder_name(dataset_id, dataset_name)
    target = root / folder_name

    found = discover(
        Path(source) if source is not None else None,
        layout,
        Path(images) if images is not None else None,
        Path(masks) if masks is not None else None,
    )
    report = ConversionReport(source=str(found.root), layout=found.layout, dataset_name=folder_name, target_folder=target)
    report.add(found.problems)
    report.add(check_target(root, dataset_id, dataset_name, overwrite))
    tasks = _plan_cases(found.cases, split_json, test_ids, folds, report)

    staging: Staging | None = None
    if not dry_run:  # also when there are errors already: an unwritable output is one more to report
        opened = open_staging(root, folder_name, with_test=any(t.subset != TRAIN for t in tasks))
        if isinstance(opened, Problem):
            report.add([opened])
        else:
            staging = opened
    try:
        options = CaseOptions(found.root, max_size, on_inverted, mask_values, clean_specks, labelme_label)
        out_dir = staging.path if staging is not None and not report.errors else None  # errors: check only
        records, problems = _run(tasks, options, out_dir, workers, progress)
        report.cases = sorted(records, key=lambda r: r.case_id)
        report.add(problems)
        report.seconds = time.perf_counter() - start
        if report.errors:
            raise ConversionError(report)
        if staging is None:
            return report
        train_ids = [r.case_id for r in report.cases if r.subset == TRAIN]
        write_dataset_json(staging.path, len(train_ids), folder_name, found.layout, max_size)
        write_cases_csv(staging.path, report.cases)
        if folds:
            write_splits(staging.path, kfold_splits(train_ids, folds))
        report.dataset_folder = target
        write_report(staging.path, report)
        staging.commit(target)
        staging = None
        return report
    finally:
        if staging is not None:
            staging.discard()


def parse_mask_values(text: str) -> dict[int, int]:
    """``"0:0,128:1,255:1"`` -> ``{0: 0, 128: 1, 255: 1}`` (mask value -> label 0 or 1)."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"(\d+)\s*:\s*([01])", item)
        if match is None:
            raise ValueError(f"--mask-values: {item!r} is not VALUE:LABEL with LABEL 0 or 1 (e.g. 0:0,255:1)")
        mapping[int(match.group(1))] = int(match.group(2))
    if not mapping:
        raise ValueError("--mask-values is empty")
    return mapping


def _check_arguments(dataset_id, dataset_name, layout, max_size, on_inverted, clean_specks, folds, split_json, test_ids) -> None:
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset id must be 1..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", dataset_name):
        raise ValueError(f"dataset name must be ASCII letters, digits, _ or -, got {dataset_name!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if on_inverted not in ON_INVERTED:
        raise ValueError(f"on_inverted must be one of {', '.join(ON_INVERTED)}, got {on_inverted!r}")
    if max_size is not None and max_size < 32:
        raise ValueError(f"max size must be at least 32 px, got {max_size}")
    if clean_specks is not None and clean_specks < 1:
        raise ValueError(f"clean specks must be at least 1 px, got {clean_specks}")
    if folds is not None and folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if split_json is not None and test_ids is not None:
        raise ValueError("give a split JSON or test ids, not both")


def _plan_cases(cases, split_json, test_ids, folds, report: ConversionReport) -> list[CaseTask]:
    """Case ids and train/test subsets; problems go into ``report``."""
    ids = [(c.source_id, case_id(c.source_id)) for c in cases]
    seen: dict[str, str] = {}
    for source_id, cid in ids:
        if cid.casefold() in seen:
            report.add([Problem(ERROR, source_id, f"case id '{cid}' is also the id of '{seen[cid.casefold()]}'", "rename one of the files")])
        seen.setdefault(cid.casefold(), source_id)

    train_ids, test_list, origin = None, list(test_ids or []), "--test-ids"
    if split_json is not None:
        origin = str(split_json)
        read = read_split_file(Path(split_json))
        if isinstance(read, Problem):
            report.add([read])
        else:
            train_ids, test_list = read
    subsets, problems = assign_subsets(ids, test_list, train_ids, origin)
    report.add(problems)

    n_train = subsets.count(TRAIN)
    if not cases and not report.errors:
        report.add([Problem(ERROR, report.source, "no cases found", "check the source folder and --layout")])
    elif cases and n_train == 0:
        report.add([Problem(ERROR, origin, "every case is a test case: nothing left to train on", "hold out fewer cases")])
    elif folds and n_train < folds:
        report.add([Problem(ERROR, origin, f"{folds} folds need at least {folds} training cases, there are {n_train}", "use fewer --folds")])
    return [CaseTask(cid, subset, c) for c, (_, cid), subset in zip(cases, ids, subsets)]


def _run(tasks: list[CaseTask], options: CaseOptions, out_dir: Path | None, workers: int | None, progress: bool) -> tuple[list[CaseRecord], list[Problem]]:
    """Convert (or check) all cases, in ``workers`` processes (default: one per CPU), with a progress bar."""
    workers = min(workers or _cpu_count(), max(1, len(tasks)))
    records, problems = [], []
    with tqdm(total=len(tasks), desc="convert", unit="case", disable=not progress) as bar:
        if workers == 1:
            results = (convert_case(t, options, out_dir) for t in tasks)
            for record, found in results:
                records.append(record)
                problems += found
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(convert_case, t, options, out_dir) for t in tasks]
                for future in as_completed(futures):
                    record, found = future.result()
                    records.append(record)
                    problems += found
                    bar.update()
    return [r for r in records if r is not None], problems


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nnunet-tongue convert",
        description="Tongue photos + masks (paired folders), the original BioHit release, or LabelMe JSON -> "
        "nnU-Net raw dataset. Checks every case and reports every problem; writes nothing when there are errors.",
        epilog="Layouts, rules, CSV columns and examples: docs/conversion.md",
    )
    p.add_argument("source", nargs="?", help="folder with the data (optional with --images and --masks)")
    p.add_argument("-o", "--output-root", metavar="DIR", help="where Dataset<ID>_<NAME> goes (default: $nnUNet_raw)")
    p.add_argument("-d", "--dataset-id", type=int, default=501, metavar="ID", help="nnU-Net dataset id (default 501)")
    p.add_argument("-n", "--dataset-name", default="Tongue", metavar="NAME", help="dataset name (default Tongue -> Dataset501_Tongue)")
    p.add_argument("--layout", choices=LAYOUTS, default="auto", help="source layout (default: detect)")
    p.add_argument("--images", metavar="DIR", help="photo folder (paired layout, with --masks)")
    p.add_argument("--masks", metavar="DIR", help="mask folder (paired layout, with --images)")
    held_out = p.add_mutually_exclusive_group()
    held_out.add_argument("--split-json", metavar="FILE", help='JSON with a "test" (and optional "train") list of ids, e.g. biohit_split.json')
    held_out.add_argument("--test-ids", metavar="IDS", help="comma-separated ids (file stems) to hold out as imagesTs/labelsTs")
    p.add_argument("--folds", type=int, metavar="K", help="also write splits_final.json with K folds over the training cases")
    p.add_argument("--max-size", type=int, metavar="PX", help="shrink photos whose longest side is above PX (recorded per case and in dataset.json)")
    p.add_argument("-j", "--workers", type=int, metavar="N", help="worker processes (default: number of CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset (only once the new one is complete)")
    p.add_argument("--on-inverted", choices=ON_INVERTED, default="fix", help="inverted masks: fix and warn (default), fail, or keep and warn")
    p.add_argument("--mask-values", metavar="MAP", help="explicit mask value -> label map, e.g. 0:0,128:1,255:1")
    p.add_argument("--clean-specks", type=int, metavar="PX", help="remove stray tongue regions smaller than PX pixels (default: keep, warn)")
    p.add_argument("--labelme-label", default="tongue", metavar="NAME", help="LabelMe shape label of the tongue (default tongue, any case)")
    p.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: 0 on success (warnings included), 1 when the data has errors."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        report = convert_dataset(
            args.source,
            args.output_root,
            args.dataset_id,
            args.dataset_name,
            layout=args.layout,
            images=args.images,
            masks=args.masks,
            split_json=args.split_json,
            test_ids=[i.strip() for i in args.test_ids.split(",") if i.strip()] if args.test_ids else None,
            max_size=args.max_size,
            workers=args.workers,
            overwrite=args.overwrite,
            on_inverted=args.on_inverted,
            mask_values=args.mask_values,
            clean_specks=args.clean_specks,
            folds=args.folds,
            labelme_label=args.labelme_label,
            dry_run=args.dry_run,
            progress=not args.no_progress,
        )
    except ConversionError as err:
        print(err.report.to_text(), end="", file=sys.stderr)
        return 1
    except ValueError as err:
        parser.error(str(err))
    print(report.to_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
