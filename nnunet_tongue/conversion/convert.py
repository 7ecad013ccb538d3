"""``nnunet-tongue convert``: tongue photos + masks / LabelMe / BioHit -> nnU-Net raw dataset (``Dataset501_Tongue``).

Python API: :func:`convert_dataset`. Command line: :func:`main` (also ``python -m
nnunet_tongue.conversion.convert``). Rules and layouts: docs/conversion.md.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from nnunet_tongue.conversion.cases import ON_INVERTED, CaseOptions, CaseTask, OutputFull, convert_case_safely
from nnunet_tongue.conversion.layouts import LAYOUTS, discover
from nnunet_tongue.conversion.naming import case_id
from nnunet_tongue.conversion.output import (
    OutputError,
    OutputLock,
    Staging,
    check_target,
    dataset_folder_name,
    find_leftovers,
    open_staging,
    remove_leftovers,
    resolve_output_root,
    write_cases_csv,
    write_dataset_json,
    write_report,
    write_splits,
)
from nnunet_tongue.conversion.report import ERROR, CaseRecord, ConversionError, ConversionReport, Problem
from nnunet_tongue.conversion.splits import TRAIN, assign_subsets, kfold_splits, read_split_file
from nnunet_tongue.interrupts import (
    ignore_sigint_in_worker,
    interrupted_by,
    sigterm_as_interrupt,
    signal_number,
    signals_held,
    stopped,
)

__all__ = ["ConversionError", "ConversionReport", "Interrupted", "OutputError", "convert_dataset", "main",
           "parse_mask_values"]

class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT), or SIGTERM under :func:`main`, stopped the conversion; ``signum`` says which. Raised by
    :func:`convert_dataset` once the workers are ended and the staging folder is removed; ``message`` says what
    was interrupted and what became of the output."""

    def __init__(self, signum: int = signal.SIGINT, message: str = ""):
        super().__init__(message or interrupted_by(signum))
        self.signum = int(signum)
        self.message = message


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

    A run holds a lock on the dataset in ``output_root`` and first clears what interrupted runs of it left
    (reported as warnings); :class:`OutputError` when the output folder cannot be written or another run holds
    the lock (nothing done). Ctrl-C cancels the cases not started, ends the workers, removes the staging
    folder and raises :class:`Interrupted` (a KeyboardInterrupt).
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
    state = _Progress(target, target.is_dir(), dry_run)
    try:
        lock = None if dry_run else OutputLock(root, folder_name)  # OutputError: not writable, or another run writes it
        staging: Staging | None = None
        try:
            leftovers = find_leftovers(root, folder_name) if lock is None else remove_leftovers(root, folder_name)
            state.stage = "reading the source folder"
            found = discover(
                Path(source) if source is not None else None,
                layout,
                Path(images) if images is not None else None,
                Path(masks) if masks is not None else None,
            )
            report = ConversionReport(source=str(found.root), layout=found.layout, dataset_name=folder_name,
                                      target_folder=target)
            report.add(leftovers)
            report.add(found.problems)
            report.add(check_target(root, dataset_id, dataset_name, overwrite))
            tasks = _plan_cases(found.cases, split_json, test_ids, folds, report)

            if lock is not None:  # also when there are errors already: a staging folder that cannot be made is one more
                opened = open_staging(root, folder_name, with_test=any(t.subset != TRAIN for t in tasks))
                if isinstance(opened, Problem):
                    report.add([opened])
                else:
                    staging = opened
            options = CaseOptions(found.root, max_size, on_inverted, mask_values, clean_specks, labelme_label)
            out_dir = staging.path if staging is not None and not report.errors else None  # errors: check only
            state.stage, state.total = "converting cases", len(tasks)
            records, problems = _run(tasks, options, out_dir, workers, progress, state, lock)
            report.cases = sorted(records, key=lambda r: r.case_id)
            report.add(problems)
            report.seconds = time.perf_counter() - start
            if report.errors:
                raise ConversionError(report)
            if staging is None:
                return report
            state.stage = "writing dataset.json and the report"
            train_ids = [r.case_id for r in report.cases if r.subset == TRAIN]
            write_dataset_json(staging.path, len(train_ids), folder_name, found.layout, max_size)
            write_cases_csv(staging.path, report.cases)
            if folds:
                write_splits(staging.path, kfold_splits(train_ids, folds))
            report.dataset_folder = target
            write_report(staging.path, report)
            with signals_held():  # the dataset appears whole or not at all
                staging.commit(target)
                staging = None
                state.published = True
            return report
        finally:
            with signals_held():
                if staging is not None:
                    staging.discard()
                if lock is not None:
                    lock.release()
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM under main(): everything is cleaned up now
        signum = signal_number(stop)
        raise Interrupted(signum, state.interrupted(signum)) from None


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


def _check_arguments(dataset_id, dataset_name, layout, max_size, on_inverted, clean_specks, folds, split_json,
                     test_ids) -> None:
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
            report.add([Problem(ERROR, source_id, f"case id '{cid}' is also the id of '{seen[cid.casefold()]}'",
                                "rename one of the files")])
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
        report.add([Problem(ERROR, origin, "every case is a test case: nothing left to train on",
                            "hold out fewer cases")])
    elif folds and n_train < folds:
        report.add([Problem(ERROR, origin, f"{folds} folds need at least {folds} training cases, there are {n_train}",
                            "use fewer --folds")])
    return [CaseTask(cid, subset, c) for c, (_, cid), subset in zip(cases, ids, subsets)]


@dataclass
class _Progress:
    """How far a conversion got, for the message when it is interrupted."""

    target: Path
    existed: bool
    dry_run: bool
    stage: str = "starting"
    done: int = 0
    total: int = 0
    published: bool = False

    def interrupted(self, signum: int) -> str:
        how = interrupted_by(signum)
        if self.published:
            return f"{how} after {self.target} was written: it is complete"
        where = f"{self.stage} ({self.done} of {self.total} done)" if self.stage == "converting cases" else self.stage
        if self.dry_run:
            return f"{how} while {where} (dry run, nothing written)"
        kept = f"; the existing {self.target.name} is unchanged" if self.existed else ""
        return (f"{how} while {where}: nothing was published to {self.target} (the partial copy was removed{kept}). "
                "Run the same command again to start over.")


def _run(
    tasks: list[CaseTask],
    options: CaseOptions,
    out_dir: Path | None,
    workers: int | None,
    progress: bool,
    state: _Progress,
    lock: OutputLock | None = None,
) -> tuple[list[CaseRecord], list[Problem]]:
    """Convert (or check) all cases, in ``workers`` processes (default: one per CPU), with a progress bar.

    On an interruption the cases not started are cancelled and the workers ended at once; so they are when the
    output's disk fills up (one error, not one per case left); a worker that dies (killed, out of memory) is
    reported as an error.
    """
    workers = min(workers or _cpu_count(), max(1, len(tasks)))
    records, problems = [], []
    with tqdm(total=len(tasks), desc="convert", unit="case", disable=not progress) as bar:

        def collect(result: tuple[CaseRecord | None, list[Problem]]) -> None:
            records.append(result[0])
            problems.extend(result[1])
            state.done += 1
            bar.update()

        def stop(full: OutputFull) -> None:
            problems.extend([full.problem, Problem(
                ERROR, str(out_dir), f"stopped: the disk is full, {len(tasks) - state.done} of {len(tasks)} case(s) "
                "not converted", "free disk space, or choose another output folder, and run the same command again")])

        if workers == 1:
            try:
                for task in tasks:
                    collect(convert_case_safely(task, options, out_dir))
            except OutputFull as full:
                stop(full)
        else:
            inherited = lock.identity() if lock is not None else None
            pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(os.getpid(), inherited))
            try:
                futures = [pool.submit(convert_case_safely, t, options, out_dir) for t in tasks]
                for future in as_completed(futures):
                    collect(future.result())
            except OutputFull as full:
                with signals_held():
                    _stop_pool(pool)
                stop(full)
            except BrokenProcessPool:
                with signals_held():
                    _stop_pool(pool)
                problems.append(
                    Problem(
                        ERROR,
                        str(options.root),
                        f"a worker process died (killed, e.g. for lack of memory) with {len(tasks) - state.done} "
                        "case(s) not converted",
                        "run again; if it happens again, use fewer workers (-j 1) or --max-size, and -j 1 to see "
                        "at which photo it happens",
                    )
                )
            except BaseException:
                with signals_held():
                    _stop_pool(pool)
                raise
            else:
                pool.shutdown()
    return [r for r in records if r is not None], problems


def _init_worker(parent: int, inherited_lock: tuple[int, int, int] | None) -> None:
    """Worker set-up: Ctrl-C (sent to the whole process group) is for the parent to handle, SIGTERM ends the worker,
    and so does the parent's death (Linux); a forked copy of the parent's lock is closed."""
    ignore_sigint_in_worker()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if inherited_lock is not None:
        fd, dev, ino = inherited_lock
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (dev, ino):
                os.close(fd)
        except OSError:
            pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the cases not started and end the workers now, without waiting for the running ones."""
    processes = list((getattr(pool, "_processes", None) or {}).copy().values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(5)
    if manager is not None and manager.ident is not None:  # a signal can come while submit() is starting it
        manager.join(5)


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
    p.add_argument("-n", "--dataset-name", default="Tongue", metavar="NAME",
                   help="dataset name (default Tongue -> Dataset501_Tongue)")
    p.add_argument("--layout", choices=LAYOUTS, default="auto", help="source layout (default: detect)")
    p.add_argument("--images", metavar="DIR", help="photo folder (paired layout, with --masks)")
    p.add_argument("--masks", metavar="DIR", help="mask folder (paired layout, with --images)")
    held_out = p.add_mutually_exclusive_group()
    held_out.add_argument("--split-json", metavar="FILE",
                          help='JSON with a "test" (and optional "train") list of ids, e.g. biohit_split.json')
    held_out.add_argument("--test-ids", metavar="IDS",
                          help="comma-separated ids (file stems) to hold out as imagesTs/labelsTs")
    p.add_argument("--folds", type=int, metavar="K",
                   help="also write splits_final.json with K folds over the training cases")
    p.add_argument("--max-size", type=int, metavar="PX",
                   help="shrink photos whose longest side is above PX (recorded per case and in dataset.json)")
    p.add_argument("-j", "--workers", type=int, metavar="N", help="worker processes (default: number of CPUs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing dataset (only once the new one is complete)")
    p.add_argument("--on-inverted", choices=ON_INVERTED, default="fix",
                   help="inverted masks: fix and warn (default), fail, or keep and warn")
    p.add_argument("--mask-values", metavar="MAP", help="explicit mask value -> label map, e.g. 0:0,128:1,255:1")
    p.add_argument("--clean-specks", type=int, metavar="PX",
                   help="remove stray tongue regions smaller than PX pixels (default: keep, warn)")
    p.add_argument("--labelme-label", default="tongue", metavar="NAME",
                   help="LabelMe shape label of the tongue (default tongue, any case)")
    p.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: 0 on success (warnings included), 1 when the data has errors, 2 for invalid
    options or an output folder that cannot be used, 130 after Ctrl-C (SIGINT), 143 after SIGTERM."""
    parser = _parser()
    args = parser.parse_args(argv)
    report = None
    try:
        with sigterm_as_interrupt():  # SIGTERM (kill, timeout, a scheduler) takes Ctrl-C's clean way out
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
            except OutputError as err:
                print(f"{parser.prog}: error: {err}", file=sys.stderr)
                return 2
            except ValueError as err:
                parser.error(str(err))
            print(report.to_text(), end="")
            return 0
    except KeyboardInterrupt as stop:  # one line, no traceback
        if isinstance(stop, Interrupted) and stop.message:  # from convert_dataset: what was interrupted, what is left
            message = stop.message
        elif report is not None and report.dataset_folder is not None:
            message = f"{interrupted_by(stop)} after {report.dataset_folder} was written: it is complete"
        else:
            message = f"{interrupted_by(stop)}: nothing was written"
        return stopped(parser.prog, message, stop)


if __name__ == "__main__":
    sys.exit(main())
