"""Zero-setup registration of the plug-in trainers with stock nnU-Net.

nnU-Net v2 looks for trainer classes in its own tree and then in every folder listed in the
environment variable ``nnUNet_extTrainer`` (``os.pathsep``-separated, read when a trainer is looked
up, by training and by prediction). The wheel installs ``nnunet_tongue.pth`` into site-packages;
Python runs it at start-up and it calls :func:`register_at_startup`, which appends
:data:`TRAINER_FOLDER` to that variable. A user's own folders stay first and keep working.

Switch it off with ``NNUNET_TONGUE_AUTOREGISTER=0``; then add the folder yourself
(``nnunet-tongue trainer-folder`` prints it).
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
#: Folder of thin modules that only re-export the plug-in trainer classes (absolute imports).
TRAINER_FOLDER = os.path.join(_HERE, "nnUNet_extTrainer")
#: Folder for short-budget trainers (``nnUNetTrainerTUNet_5epochs_10its``): tests, demo and benchmarks add it
#: themselves; it is never registered at start-up.
BUDGET_TRAINER_FOLDER = os.path.join(_HERE, "training", "budget_trainers")
ENV_TRAINERS = "nnUNet_extTrainer"
ENV_SWITCH = "NNUNET_TONGUE_AUTOREGISTER"


def switched_off(variable: str) -> bool:
    """Whether the environment sets ``variable`` to ``0``, ``false``, ``no`` or ``off`` (any case): the
    plug-in's on-by-default switches."""
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")


def autoregister_enabled() -> bool:
    return not switched_off(ENV_SWITCH)


def add_trainer_folder(environ: "os._Environ | dict" = os.environ, folder: str = TRAINER_FOLDER) -> None:
    """Append ``folder`` to ``nnUNet_extTrainer`` in ``environ`` unless it is listed."""
    current = [p for p in environ.get(ENV_TRAINERS, "").split(os.pathsep) if p]
    if folder not in current:
        environ[ENV_TRAINERS] = os.pathsep.join(current + [folder])


def register_at_startup() -> None:
    """Called from ``nnunet_tongue.pth``; must stay cheap and must never raise."""
    try:
        if autoregister_enabled():
            add_trainer_folder()
    except Exception:  # a broken environment must not stop every Python process from starting
        pass


def main(argv: "list[str] | None" = None) -> int:
    """``nnunet-tongue trainer-folder``: print the folder for ``nnUNet_extTrainer``."""
    import argparse

    argparse.ArgumentParser(prog="nnunet-tongue trainer-folder",
                            description="Print the folder that holds the plug-in trainers, for nnUNet_extTrainer "
                                        "(export nnUNet_extTrainer=$(nnunet-tongue trainer-folder)).").parse_args(argv)
    print(TRAINER_FOLDER)
    return 0
