"""``nnunet-tongue``: one command, one sub-command per job.

Each sub-command lives in its own module, which exposes ``main(argv) -> int`` with its own argument
parser; this dispatcher only imports the module that is asked for, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

#: sub-command -> (module with ``main(argv)``, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("nnunet_tongue.demo",
             "synthetic tongue photos -> plan -> train T-Unet -> segment -> evaluate (CPU, minutes)"),
    "convert": ("nnunet_tongue.conversion.convert", "tongue photos + masks / LabelMe / BioHit -> nnU-Net raw dataset"),
    "plan_and_preprocess": ("nnunet_tongue.planning.plan_and_preprocess",
                            "nnUNetv2_plan_and_preprocess with the plug-in planners (-pl)"),
    "segment": ("nnunet_tongue.inference.segment", "photos -> masks, cut-outs, overlays and a JSON line per photo"),
    "evaluate": ("nnunet_tongue.evaluation.evaluate",
                 "predicted vs ground-truth masks -> Dice/IoU/HD95/ASSD, CSV, report"),
    "models": ("nnunet_tongue.models.command", "list, show, install (nnU-Net zip), export and remove tongue models"),
    "app": ("nnunet_tongue.app", "the tongue segmentation app: a local web page (needs nnunet-tongue[app])"),
    "trainer-folder": ("nnunet_tongue.registration", "print the folder to put in nnUNet_extTrainer"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: nnunet-tongue <command> [options]   (nnunet-tongue <command> -h for help)", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from nnunet_tongue import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"nnunet-tongue: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:  # before the command's own handling began (while importing): nothing was done yet
        print(f"nnunet-tongue {name}: interrupted before it started; nothing was done", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
