"""``nnunet-tongue models``: list, show, install, export and remove tongue models."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from nnunet_tongue.models.packed import ModelError, PackedModel
from nnunet_tongue.models.store import (
    DEFAULT_MODEL,
    available_models,
    find_model,
    install_zip,
    models_home,
    remove_model,
)


def _figures(card: dict) -> str:
    rows = []
    for source, figures in card.get("figures", {}).get("test", {}).items():
        dice = figures["dice"]
        rows.append(f"{source} test ({figures['n_cases']} photos): Dice {100 * dice['mean']:.2f} "
                    f"± {100 * dice['sd']:.2f} (worst {100 * dice['min']:.2f})")
    return "; ".join(rows)


def describe(model: PackedModel, origin: str, full: bool = False) -> str:
    """A model's card as text: one paragraph, or everything with ``full``."""
    card = model.card
    title = f"{model.name} ({origin}{', default' if model.name == DEFAULT_MODEL and origin == 'bundled' else ''})"
    lines = [title] + ([f"  {card['description']}"] if card.get("description") else [])
    lines.append(f"  trainer {model.trainer}, configuration {card['configuration']}, folds "
                 f"{', '.join(map(str, model.folds))}; folder {model.folder}")
    if _figures(card):
        lines.append(f"  held out: {_figures(card)}")
    if full:
        for key in ("intended_use", "input_scale", "training", "training_data", "figures", "installed_from"):
            if key in card:
                value = card[key] if isinstance(card[key], str) else json.dumps(card[key], indent=2)
                lines.append(f"  {key}:")
                lines += [f"    {line}" for line in value.splitlines()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet-tongue models",
        description="Tongue models: the bundled one and those installed under "
                    f"{models_home()} (NNUNET_TONGUE_MODELS sets another folder). Without a sub-command: list them.",
        epilog=textwrap.dedent("""\
            examples:
              nnunet-tongue models                                  # list, with their held-out figures
              nnunet-tongue models show tongue-unet320              # the whole card
              nnunet-tongue models install Dataset501.zip           # a zip of nnUNetv2_export_model_to_zip
              nnunet-tongue models export -o $nnUNet_results        # the bundled model as an nnU-Net model folder
            exit status: 0 done; 2 nothing done (bad arguments, unknown model, unusable zip)"""),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("list", help="list the models (the default)")
    show = commands.add_parser("show", help="print a model's card")
    show.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    install = commands.add_parser(
        "install", help="install the models of a zip written by nnUNetv2_export_model_to_zip",
        description="Install every model folder of a zip written by nnUNetv2_export_model_to_zip. Its checkpoints "
                    "are read without running code (weights and numbers only) and stored as hash-checked "
                    "safetensors; a checkpoint that needs code to load is refused.")
    install.add_argument("zip", type=Path)
    install.add_argument("--name", help="the model's name (default Dataset-Trainer-configuration)")
    install.add_argument("--overwrite", action="store_true", help="replace an installed model of that name")
    export = commands.add_parser(
        "export", help="write a model as a stock nnU-Net model folder",
        description="Write a model as a stock nnU-Net model folder, <OUTPUT>/<Dataset>/<Trainer>__<Plans>__<config>/"
                    "fold_<f>/checkpoint_final.pth, for nnUNetv2_predict_from_modelfolder (-f all), "
                    "nnUNetv2_train -pretrained_weights, and nnUNetv2_export_model_to_zip.")
    export.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    export.add_argument("-o", "--output", type=Path, required=True, help="folder to write into (e.g. $nnUNet_results)")
    remove = commands.add_parser("remove", help="delete an installed model")
    remove.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "list"):
            entries = available_models()
            for entry in entries:
                print(describe(PackedModel.open(entry.folder), entry.origin) + "\n")
            if not any(e.origin == "installed" for e in entries):
                print(f"no installed models in {models_home()} (nnunet-tongue models install <zip>)")
        elif args.command == "show":
            folder = find_model(args.name)
            origin = next((e.origin for e in available_models() if e.folder == folder), "folder")
            print(describe(PackedModel.open(folder), origin, full=True))
        elif args.command == "install":
            print("note: a model is code you run on your photos; install models from sources you trust",
                  file=sys.stderr)
            for model in install_zip(args.zip, args.name, args.overwrite):
                print(f"installed {model.name} -> {model.folder}\n  use it: nnunet-tongue segment -m {model.name} "
                      "-i photos/ -o out/")
        elif args.command == "export":
            target = PackedModel.open(find_model(args.name)).export(args.output)
            folds = " ".join(p.name[5:] for p in sorted(target.glob("fold_*")))
            print(f"wrote {target}\n"
                  f"  predict:   nnUNetv2_predict_from_modelfolder -m {target} -f {folds} -i IN -o OUT\n"
                  f"  fine-tune: nnUNetv2_train DATASET 2d 0 -tr <trainer> -pretrained_weights "
                  f"{target / ('fold_' + folds.split()[0]) / 'checkpoint_final.pth'}")
        elif args.command == "remove":
            print(f"removed {remove_model(args.name)}")
    except (ModelError, FileExistsError, FileNotFoundError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
