"""Where models live: the one bundled in the package and those the user installed.

Installed models are packed models (:mod:`nnunet_tongue.models.packed`) under :func:`models_home`:
``$NNUNET_TONGUE_MODELS``, else ``$XDG_DATA_HOME/nnunet_tongue/models``, else
``~/.local/share/nnunet_tongue/models``. :func:`install_zip` packs the model folders of a zip written by
``nnUNetv2_export_model_to_zip`` into it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from nnunet_tongue.models.packed import ModelError, PackedModel, is_packed, pack

#: packed models shipped inside the package
BUNDLED_ROOT = Path(__file__).parent / "bundled"
#: the model ``segment`` and ``app`` use when none is named
DEFAULT_MODEL = "tongue-unet320"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def models_home() -> Path:
    """The folder installed models go to (read at call time)."""
    if os.environ.get("NNUNET_TONGUE_MODELS"):
        return Path(os.environ["NNUNET_TONGUE_MODELS"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "nnunet_tongue" / "models"


@dataclass
class ModelEntry:
    name: str
    origin: str  # "bundled" or "installed"
    folder: Path


def available_models() -> list[ModelEntry]:
    """Bundled models first, then installed ones, each sorted by name (an installed model never hides a bundled one)."""
    entries = []
    for origin, root in (("bundled", BUNDLED_ROOT), ("installed", models_home())):
        if root.is_dir():
            entries += [ModelEntry(p.name, origin, p) for p in sorted(root.iterdir())
                        if not p.name.startswith(".") and is_packed(p)]
    return entries


def find_model(name: str | os.PathLike | None = None) -> Path:
    """A model name (bundled or installed) or a folder -> the model folder; ``None`` -> the default model."""
    name = DEFAULT_MODEL if name is None else name
    entries = available_models()
    for entry in entries:
        if entry.name == str(name):
            return entry.folder
    if Path(name).is_dir():
        return Path(name)
    known = ", ".join(e.name for e in entries) or "none"
    if name == DEFAULT_MODEL:
        raise ModelError(f"the bundled model {DEFAULT_MODEL} is missing from {BUNDLED_ROOT}: reinstall nnunet-tongue")
    raise ModelError(f"{name}: neither a model name (known: {known}; see `nnunet-tongue models`) nor a model folder")


def _safe_members(archive: zipfile.ZipFile, zip_path: Path) -> list[str]:
    names = archive.namelist()
    for member in names:
        parts = Path(member).parts
        if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise ModelError(f"{zip_path}: member {member!r} points outside the archive; not installed")
    return names


def _model_folders(names: list[str]) -> list[str]:
    """Folders of the archive that hold an nnU-Net model: plans.json, dataset.json and fold_*/checkpoint_final.pth."""
    files = set(names)
    folders = {str(Path(n).parent.parent) for n in names
               if re.fullmatch(r"fold_[^/]+", Path(n).parent.name) and Path(n).name == "checkpoint_final.pth"}
    return sorted(f for f in folders if _member(f, "plans.json") in files and _member(f, "dataset.json") in files)


def _member(folder: str, name: str) -> str:
    return name if folder in ("", ".") else f"{folder}/{name}"


def default_name(folder: str) -> str:
    """``Dataset501_Tongue/nnUNetTrainerTUNet__nnUNetPlans__2d`` -> ``Dataset501_Tongue-nnUNetTrainerTUNet-2d``."""
    parts = Path(folder).parts
    trainer, _, configuration = (parts[-1].split("__") + ["", ""])[:3]
    name = "-".join(p for p in ((parts[-2] if len(parts) > 1 else ""), trainer, configuration) if p)
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "model"


def install_zip(zip_path: str | os.PathLike, name: str | None = None, overwrite: bool = False) -> list[PackedModel]:
    """Install every model folder of an ``nnUNetv2_export_model_to_zip`` archive as a packed model.

    Checkpoints are read with ``torch.load(weights_only=True)``: one that needs code to load is refused.
    ``name`` names the model (only for an archive holding one). Nothing is installed unless every model of
    the archive can be.
    """
    zip_path = Path(zip_path)
    if not zipfile.is_zipfile(zip_path):
        raise ModelError(f"{zip_path} is not a zip file (make one with nnUNetv2_export_model_to_zip)")
    home = models_home()
    with zipfile.ZipFile(zip_path) as archive:
        names = _safe_members(archive, zip_path)
        folders = _model_folders(names)
        if not folders:
            raise ModelError(f"{zip_path} holds no nnU-Net model folder (plans.json, dataset.json and "
                             "fold_*/checkpoint_final.pth); make it with nnUNetv2_export_model_to_zip")
        if name is not None and len(folders) > 1:
            raise ModelError(f"{zip_path} holds {len(folders)} models ({', '.join(folders)}); --name names only one")
        targets = {folder: name or default_name(folder) for folder in folders}
        for target in targets.values():
            if not _NAME.fullmatch(target):
                raise ModelError(f"model name {target!r}: use letters, digits, '.', '_' and '-' (at most 100)")
            if target in {e.name for e in available_models() if e.origin == "bundled"}:
                raise ModelError(f"{target} is the name of a bundled model: choose another with --name")
            if (home / target).exists() and not overwrite:
                raise FileExistsError(f"a model named {target} is installed ({home / target}): pass --overwrite "
                                      "to replace it, or --name to install beside it")
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".install.", dir=home) as tmp:
            staged = []
            for folder, target in targets.items():
                prefix = _member(folder, "")
                wanted = [n for n in names if n.startswith(prefix) and
                          (n[len(prefix):] in ("plans.json", "dataset.json") or n.endswith("/checkpoint_final.pth"))]
                for member in wanted:
                    archive.extract(member, tmp)
                staged.append((pack(Path(tmp) / folder, Path(tmp) / "packed" / target,
                                    card={"name": target, "installed_from": str(zip_path.resolve())}), target))
            installed = []
            for model, target in staged:
                if (home / target).exists():
                    shutil.rmtree(home / target)
                model.folder.rename(home / target)
                installed.append(PackedModel.open(home / target))
    return installed


def remove_model(name: str) -> Path:
    """Delete the installed model ``name`` (bundled models cannot be removed)."""
    for entry in available_models():
        if entry.name == name:
            if entry.origin != "installed":
                raise ModelError(f"{name} is bundled with nnunet-tongue and cannot be removed")
            shutil.rmtree(entry.folder)
            return entry.folder
    raise ModelError(f"no installed model named {name} (see `nnunet-tongue models`)")
