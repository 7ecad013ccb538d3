"""Fine-tuning study: the bundled model fine-tuned on 20 photos of one source vs trained from scratch on them.

    python benchmarks/fine_tune.py                  # NTUST, 20 cases, 8 epochs x 12 iterations, batch 11

Steps (stock nnU-Net and nnunet-tongue commands, echoed and logged under ``--workdir``):
1. the cross-dataset benchmark's preparation (``benchmarks/cross_dataset.py``), then a raw dataset holding the
   first ``--cases`` ``train`` cases of ``--source`` (in the split file's order), planned and preprocessed by
   the stock command;
2. ``nnunet-tongue models export tongue-unet320 -o <workdir>/pretrained_tongue-unet320_<its trainer>``:
   the bundled model as an nnU-Net model folder;
3. ``nnUNetv2_train <id> 2d all -tr nnUNetTrainerUNet320CoatingAug_<E>epochs_<I>its_3val_bs<B>`` twice, same
   budget and batch: with ``-pretrained_weights <exported checkpoint>`` and from scratch;
4. ``nnunet-tongue segment`` + ``evaluate`` of both on the source's whole test set, beside the bundled model
   as it is.

Writes ``benchmarks/results/fine_tune.json`` and the table in ``docs/models.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

from biohit_benchmark import BIOHIT as DATA, RESULTS, REPO, nnunet_env, run
from bundled_model import MAX_SIZE, TRAINER, _replace_table, bundled_tag, export_bundled, score
from cross_dataset import SOURCES, dataset_name, prepare

from nnunet_tongue.conversion import CONVERSION_KEY
from nnunet_tongue.conversion.output import measure_tongue_extent

DOCS = REPO / "docs" / "models.md"
DATASET_ID = 521


def small_dataset(workdir: Path, env: dict, source: str, cases: int, data: Path) -> str:
    """The first ``cases`` train cases of ``source`` as their own raw dataset, planned; returns its name."""
    name = f"Dataset{DATASET_ID}_{SOURCES[source][1]}{cases}"
    raw = workdir / "raw" / name
    if not raw.exists():
        single = workdir / "raw" / dataset_name(source)
        train = json.loads((data / SOURCES[source][2]).read_text())["train"][:cases]
        staging = raw.with_name(raw.name + ".partial")
        for folder in ("imagesTr", "labelsTr"):
            (staging / folder).mkdir(parents=True, exist_ok=True)
        for case in train:
            for f in [*(single / "imagesTr").glob(f"{case}_0000.png"), single / "labelsTr" / f"{case}.png"]:
                folder = f.parent.name
                (staging / folder / f.name).symlink_to(f.resolve())
        meta = json.loads((single / "dataset.json").read_text())
        meta.update(numTraining=len(train), name=raw.name.split("_", 1)[1])
        meta[CONVERSION_KEY]["tongue_extent_px"] = measure_tongue_extent(staging / "labelsTr")
        (staging / "dataset.json").write_text(json.dumps(meta, indent=1))
        staging.rename(raw)
    if not (workdir / "preprocessed" / name).exists():
        run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-npfp", "2", "-np", "2",
             "--verify_dataset_integrity", "--no_pbar"], env, workdir / "benchmark.log")
    return name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=SOURCES, default="ntust")
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=11)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "runs" / "cross_dataset" / "cpu")
    p.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args()
    from nnunet_tongue.models.store import DEFAULT_MODEL
    from nnunet_tongue.training.budget import budget_trainer_name

    workdir = args.workdir
    prepare(workdir, MAX_SIZE, args.data)
    env = nnunet_env(workdir)
    dataset = small_dataset(workdir, env, args.source, args.cases, args.data)
    tag = bundled_tag()  # the packed model's own folders: a retrained bundled model is fine-tuned afresh
    pretrained = export_bundled(workdir, env)
    budgeted = budget_trainer_name(TRAINER, args.epochs, args.iterations, 3, batch_size=args.batch_size)
    photos = workdir / f"test_photos_{args.source}"
    truth = workdir / "fullres" / dataset_name(args.source) / "labelsTs"
    results = {"date": date.today().isoformat(), "source": args.source, "cases": args.cases, "trainer": budgeted,
               "test": {}}
    for start_from, extra in (("bundled", ["-pretrained_weights", str(pretrained)]), ("scratch", [])):
        origin = "scratch" if start_from == "scratch" else tag
        results_root = workdir / f"results_fine_tune_{origin}"
        run_env = nnunet_env(workdir, nnUNet_results=str(results_root))
        model = results_root / dataset / f"{budgeted}__nnUNetPlans__2d"
        if not (model / "fold_all" / "checkpoint_final.pth").exists():
            run(["nnUNetv2_train", str(DATASET_ID), "2d", "all", "-tr", budgeted, "-device", "cpu", *extra], run_env,
                workdir / f"train_{dataset}_{start_from}.log")
        results["test"][start_from], _ = score(workdir, run_env, f"fine_tune_{budgeted}_{origin}_{args.source}",
                                               photos, truth, ["-m", str(model), "-f", "all"])
    results["test"]["bundled_as_is"], _ = score(workdir, env, f"{tag}_{args.source}", photos, truth,
                                                ["-m", DEFAULT_MODEL])
    (RESULTS / "fine_tune.json").write_text(json.dumps(results, indent=1, default=float))
    DOCS.write_text(_replace_table(DOCS.read_text(), markdown(results), "fine-tune-figures"))
    print(json.dumps({k: v["metrics"]["dice"]["mean"] for k, v in results["test"].items()}))
    return 0


def markdown(results: dict) -> str:
    name = SOURCES[results["source"]][1]
    lines = [f"| model | {name} test Dice % (mean ± sd) | worst | HD95 px |", "|---|---|---|---|"]
    labels = {"bundled": f"bundled model fine-tuned on {results['cases']} {name} photos",
              "scratch": f"trained from scratch on the same {results['cases']} photos",
              "bundled_as_is": "bundled model, not fine-tuned"}
    for key, label in labels.items():
        m = results["test"][key]["metrics"]
        lines.append(f"| {label} | {100 * m['dice']['mean']:.2f} ± {100 * m['dice']['sd']:.2f} | "
                     f"{100 * m['dice']['min']:.2f} | {m['hd95']['mean']:.1f} |")
    lines += ["", f"Both trainings: `{results['trainer']}` (fold all), measured {results['date']} with "
                  f"`python benchmarks/fine_tune.py --source {results['source']} --cases {results['cases']}`."]
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"done in {time.time() - started:.0f} s", file=sys.stderr)
    sys.exit(code)
