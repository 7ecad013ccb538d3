"""Zero-setup registration: stock nnU-Net finds the plug-in trainers right after install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nnunet_tongue.registration import TRAINER_FOLDER


def python(code: str, **env_changes: str | None) -> str:
    """Run ``code`` in a fresh interpreter of this environment (so site-packages' .pth files run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_extTrainer", "NNUNET_TONGUE_AUTOREGISTER")}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=300).stdout.strip().splitlines()[-1]


def test_fresh_interpreter_has_the_trainer_folder_in_nnUNet_extTrainer():
    assert python("import os; print(os.environ['nnUNet_extTrainer'])") == TRAINER_FOLDER


def test_users_own_trainer_folders_stay_first():
    value = python("import os; print(os.environ['nnUNet_extTrainer'])", nnUNet_extTrainer="/my/trainers")
    assert value.split(os.pathsep) == ["/my/trainers", TRAINER_FOLDER]


def test_registration_can_be_switched_off():
    code = "import os; print(os.environ.get('nnUNet_extTrainer', 'unset'))"
    assert python(code, NNUNET_TONGUE_AUTOREGISTER="0") == "unset"


def test_stock_trainer_lookup_returns_the_package_classes():
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find; "
            "from nnunet_tongue.training.trainers import PRODUCT_TRAINERS as P; "
            "print(','.join(find(c.__name__).__module__ for c in P))")
    found = python(code).split(",")
    assert set(found) == {"nnunet_tongue.training.trainers"}


def test_the_trainer_folder_exports_every_trainer_the_package_defines_and_nothing_else():
    import importlib.util

    from nnunet_tongue.training import trainers

    defined = {name for name, obj in vars(trainers).items() if name.startswith("nnUNetTrainer")
               and isinstance(obj, type) and obj.__module__ == trainers.__name__}
    spec = importlib.util.spec_from_file_location("folder_module", Path(TRAINER_FOLDER) / "nnunet_tongue_trainers.py")
    folder_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(folder_module)
    exported = {name for name in vars(folder_module) if name.startswith("nnUNetTrainer")}
    assert defined == exported == {cls.__name__ for cls in trainers.PRODUCT_TRAINERS}


def test_budget_trainers_are_not_on_the_production_search_path():
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
            "try:\n    find('nnUNetTrainerTUNet_5epochs_10its'); print('found')\n"
            "except RuntimeError:\n    print('not found')")
    assert python(code) == "not found"


def test_budget_trainers_are_found_where_the_workspace_runs_nnunet(tmp_path: Path):
    from nnunet_tongue.workspace import NnUNetWorkspace

    env = NnUNetWorkspace(tmp_path).environment()
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find; "
            "t = find('nnUNetTrainerResUNet_5epochs_10its_2val'); "
            "print(t.__module__, t.budget['num_epochs'], t.__mro__[2].__name__)")
    assert (python(code, nnUNet_extTrainer=env["nnUNet_extTrainer"])
            == "nnunet_tongue.training.budget 5 nnUNetTrainerResUNet")


def test_a_users_own_external_trainer_still_resolves(tmp_path: Path):
    (tmp_path / "my_trainers.py").write_text(
        "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
        "class nnUNetTrainerMine(nnUNetTrainer):\n    pass\n")
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find; "
            "print(find('nnUNetTrainerMine').__name__, find('nnUNetTrainerTUNet').__name__)")
    assert python(code, nnUNet_extTrainer=str(tmp_path)) == "nnUNetTrainerMine nnUNetTrainerTUNet"


def test_trainer_folder_holds_only_thin_re_exports():
    for module in Path(TRAINER_FOLDER).glob("*.py"):
        assert "class " not in module.read_text(), f"{module} must only re-export classes"
    assert not (Path(TRAINER_FOLDER) / "__init__.py").exists()
