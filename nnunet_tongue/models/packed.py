"""Packed models: a trained nnU-Net model as plain data, loaded without pickle.

A packed model is a folder::

    card.json            what it is: trainer, configuration, folds, weights' SHA-256, training data, figures
    plans.json           nnU-Net's plans (the plug-in trainers write the whole network into them)
    dataset.json         nnU-Net's dataset.json (labels, channels, the training photos' scale)
    fold_<f>.safetensors the network weights of each fold (float16 or float32)

nnU-Net's own checkpoints (``fold_N/checkpoint_final.pth``) are pickles, which run code when loaded; a
packed model holds tensors and JSON only, and every weights file is checked against the hash in its card
before it is read. :func:`pack` turns an nnU-Net model folder into one (reading its checkpoints with
``torch.load(weights_only=True)``, which refuses code), :meth:`PackedModel.export` turns one back into a
stock nnU-Net model folder for ``nnUNetv2_predict_from_modelfolder`` and ``nnUNetv2_train -pretrained_weights``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from nnunet_tongue.inference.predictor import PhotoPredictor

CARD = "card.json"
#: card format; a card with a newer format is refused with an upgrade hint
CARD_FORMAT = 1


class ModelError(Exception):
    """A model is missing, incomplete, damaged or not usable for photos."""


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_packed(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a packed model (it has a card)."""
    return (Path(folder) / CARD).is_file()


def trainer_class(name: str) -> type:
    """The trainer class ``name`` names: the plug-in's own directly (fast), else nnU-Net's search."""
    from nnunet_tongue.training.budget import budget_trainer
    from nnunet_tongue.training.trainers import PRODUCT_TRAINERS

    ours = {cls.__name__: cls for cls in PRODUCT_TRAINERS}
    if name in ours:
        return ours[name]
    budget = budget_trainer(name)
    if budget is not None:
        return budget
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        raise ModelError(f"trainer {name} not found: install the package that defines it, or add its folder to "
                         "nnUNet_extTrainer") from None


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelError(f"{path} not found: the model folder {path.parent} is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is not valid JSON ({e}): reinstall the model") from None


@dataclass
class PackedModel:
    """A packed model folder, read and checked (weights are read by :meth:`weights`)."""

    folder: Path
    card: dict
    plans: dict
    dataset_json: dict

    @classmethod
    def open(cls, folder: str | os.PathLike) -> PackedModel:
        folder = Path(folder)
        if not (folder / CARD).is_file():
            raise ModelError(f"{folder} has no {CARD}, so it is not a packed model: use an nnU-Net model folder with "
                             "`segment -m FOLDER`, or zip it with nnUNetv2_export_model_to_zip and `models install` it")
        card = _read_json(folder / CARD)
        if card.get("format", 0) > CARD_FORMAT:
            raise ModelError(f"{folder} was packed by a newer nnunet-tongue (card format {card['format']}): "
                             "upgrade nnunet-tongue")
        for key in ("trainer", "configuration", "weights"):
            if key not in card:
                raise ModelError(f"{folder / CARD} has no {key!r}: it is not a packed model card")
        for fold, entry in card["weights"].items():
            if not (folder / entry["file"]).is_file():
                raise ModelError(f"{folder / entry['file']} (fold {fold}) is missing: reinstall the model")
        return cls(folder, card, _read_json(folder / "plans.json"), _read_json(folder / "dataset.json"))

    @property
    def name(self) -> str:
        return self.card.get("name", self.folder.name)

    @property
    def trainer(self) -> str:
        return self.card["trainer"]

    @property
    def folds(self) -> list[int | str]:
        return [f if f == "all" else int(f) for f in self.card["weights"]]

    def weights(self, fold: int | str) -> dict[str, torch.Tensor]:
        """The fold's network weights as float32 tensors, after checking the file against the card's hash."""
        from safetensors import safe_open

        entry = self.card["weights"].get(str(fold))
        if entry is None:
            raise ModelError(f"{self.name} has no fold {fold}; it has {', '.join(map(str, self.folds))}")
        path = self.folder / entry["file"]
        if sha256(path) != entry["sha256"]:
            raise ModelError(f"{path} does not match the hash in {self.folder / CARD}: the file is damaged or was "
                             "changed; reinstall the model")
        with safe_open(str(path), "pt") as f:
            weights = {k: f.get_tensor(k).float() for k in f.keys()}
            aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
        weights.update({alias: weights[key] for alias, key in aliases.items()})
        return weights

    def build_network(self) -> torch.nn.Module:
        """The network, built from the plans as the trainer builds it at inference (no weights): directly from
        the plans' architecture entry when the card says the trainer builds exactly that (``network_from_plans``,
        the plug-in trainers), else by the trainer's ``build_network_architecture``."""
        from nnunet_tongue.inference.predictor import configuration, num_segmentation_heads

        if not self.card.get("network_from_plans"):
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

            return self._build_network(PlansManager(self.plans))
        from nnunet_tongue.networks.from_plans import build_from_architecture

        return build_from_architecture(configuration(self.plans, self.card["configuration"])["architecture"],
                                       len(self.dataset_json["channel_names"]),
                                       num_segmentation_heads(self.dataset_json))

    def predictor(self, folds: list[int | str], **options) -> PhotoPredictor:
        """A :class:`~nnunet_tongue.inference.predictor.PhotoPredictor` with these folds' weights (checked);
        ``options``: its keyword arguments (``use_mirroring``, ``tile_step_size``, ``device``)."""
        from nnunet_tongue.inference.predictor import PhotoPredictor, configuration

        return PhotoPredictor(self.build_network(), [self.weights(fold) for fold in folds], self.plans,
                              configuration(self.plans, self.card["configuration"]), self.dataset_json,
                              mirror_axes=self.mirroring_axes, **options)

    def _build_network(self, plans_manager) -> torch.nn.Module:
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        configuration = plans_manager.get_configuration(self.card["configuration"])
        return trainer_class(self.trainer).build_network_architecture(
            plans_manager, configuration, determine_num_input_channels(plans_manager, configuration, self.dataset_json),
            plans_manager.get_label_manager(self.dataset_json).num_segmentation_heads, enable_deep_supervision=False)

    def initialize(self, predictor, folds: list[int | str]) -> None:
        """Set up nnU-Net's ``nnUNetPredictor`` with these folds' weights, as
        ``initialize_from_trained_model_folder`` does for a model folder (checked weights, no pickle)."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plans_manager = PlansManager(self.plans)
        network = self._build_network(plans_manager)
        parameters = [self.weights(fold) for fold in folds]
        network.load_state_dict(parameters[0])
        predictor.manual_initialization(network, plans_manager,
                                        plans_manager.get_configuration(self.card["configuration"]), parameters,
                                        self.dataset_json, self.trainer, self.mirroring_axes)

    @property
    def mirroring_axes(self) -> tuple[int, ...] | None:
        axes = self.card.get("inference_allowed_mirroring_axes")
        return None if axes is None else tuple(axes)

    def export(self, results_root: str | os.PathLike, folds: list[int | str] | None = None) -> Path:
        """Write this model as a stock nnU-Net model folder under ``results_root``
        (``<dataset>/<trainer>__<plans>__<configuration>/fold_<f>/checkpoint_final.pth``); returns its path.

        The checkpoints hold what nnU-Net's predictor and ``-pretrained_weights`` read (float32 weights,
        trainer name, configuration, mirroring axes) and nothing that needs code to load.
        """
        import torch
        from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier

        dataset = self.card.get("dataset") or f"Dataset999_{self.dataset_json.get('name', 'Tongue')}"
        identifier = convert_trainer_plans_config_to_identifier(self.trainer,
                                                                self.plans.get("plans_name", "nnUNetPlans"),
                                                                self.card["configuration"])
        target = Path(results_root) / dataset / identifier
        if target.exists():
            raise FileExistsError(f"{target} exists: remove it or export elsewhere")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{identifier}.", suffix=".partial", dir=target.parent))
        try:
            for name, content in (("plans.json", self.plans), ("dataset.json", self.dataset_json)):
                (staging / name).write_text(json.dumps(content, indent=2))
            for fold in folds or self.folds:
                (staging / f"fold_{fold}").mkdir()
                checkpoint = {
                    "network_weights": self.weights(fold), "trainer_name": self.trainer,
                    "inference_allowed_mirroring_axes": self.mirroring_axes,
                    "init_args": {"plans": self.plans, "configuration": self.card["configuration"], "fold": fold,
                                  "dataset_json": self.dataset_json, "device": "cpu"},
                    "current_epoch": int(self.card.get("training", {}).get("epochs", 0))}
                torch.save(checkpoint, staging / f"fold_{fold}" / "checkpoint_final.pth")
            _publish(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target


def _publish(staging: Path, target: Path) -> None:
    """Give the staging folder the modes the umask gives new files (mkdtemp and safetensors make them
    private), then rename it to ``target`` in one step."""
    mask = os.umask(0)
    os.umask(mask)
    for path in staging.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    os.chmod(staging, 0o777 & ~mask)
    staging.rename(target)


def _network_from_plans(trainer: str, plans: dict, configuration_name: str) -> bool:
    """Whether ``trainer`` builds exactly the network its plans' architecture entry describes (the plug-in
    trainers do for entries in the explicit form they write), so a packed model can be built without it."""
    from nnunet_tongue.inference.predictor import configuration
    from nnunet_tongue.networks.from_plans import is_explicit
    from nnunet_tongue.training.trainers import PRODUCT_TRAINERS, PlugInNetworkTrainer

    cls = {c.__name__: c for c in PRODUCT_TRAINERS}.get(trainer)
    return (cls is not None and issubclass(cls, PlugInNetworkTrainer)
            and is_explicit(cls.network_name, configuration(plans, configuration_name)["architecture"]))


def _without_aliases(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state dict whose entries share memory (a module registered under two names) -> one tensor per
    memory block, and alias -> stored name."""
    tensors, aliases, seen = {}, {}, {}
    for key in sorted(state):
        value = state[key]
        identity = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                    tuple(value.stride()), value.dtype)
        if value.numel() and identity in seen:
            aliases[key] = seen[identity]
        else:
            seen[identity] = key
            tensors[key] = value
    return tensors, aliases


def _checkpoint(path: Path) -> dict:
    """An nnU-Net checkpoint read without running code: tensors, containers, numbers and numpy scalars only."""
    import torch

    allowed = [np._core.multiarray.scalar, np.dtype, *(type(np.dtype(t)) for t in "?bhilqBHILQefdgFD")]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (pickle errors have no common type)
        raise ModelError(f"{path} holds more than weights and numbers, so it cannot be read without running its "
                         f"code ({str(e).splitlines()[0][:200]}); not packed. A model you trust can still be used "
                         "as a folder with -m") from None


def pack(model_folder: str | os.PathLike, output: str | os.PathLike, *, folds: list[int | str] | None = None,
         dtype: str = "float32", trainer: str | None = None, card: dict | None = None,
         checkpoint: str = "checkpoint_final.pth") -> PackedModel:
    """Pack the nnU-Net model folder ``model_folder`` (``Trainer__Plans__configuration``) into ``output``.

    ``folds``: default every fold with ``checkpoint``; ``dtype``: the stored weights' type (``float32`` or
    ``float16``); ``trainer``: the
    name written to the card (default the checkpoint's; a short-budget trainer is recorded as the product
    trainer it budgets, which builds the same network); ``card``: more card entries (name, figures, ...).
    ``output`` is written in a staging folder and appears complete or not at all.
    """
    import torch

    from nnunet_tongue.training.budget import product_trainer_name

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    model_folder, output = Path(model_folder), Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists: remove it or choose another name")
    if folds is None:
        folds = sorted((p.parent.name[5:] for p in model_folder.glob(f"fold_*/{checkpoint}")),
                       key=lambda f: (f == "all", f))
    if not folds:
        raise ModelError(f"no fold_*/{checkpoint} in {model_folder}: is it an nnU-Net model folder?")
    plans, dataset_json = _read_json(model_folder / "plans.json"), _read_json(model_folder / "dataset.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        from safetensors.torch import save_file

        weights, first = {}, None
        for fold in folds:
            state = _checkpoint(model_folder / f"fold_{fold}" / checkpoint)
            first = first or state
            file = f"fold_{fold}.safetensors"
            tensors, aliases = _without_aliases(state["network_weights"])
            save_file({k: v.to(getattr(torch, dtype)).contiguous() for k, v in tensors.items()}, str(staging / file),
                      metadata={"aliases": json.dumps(aliases)})
            weights[str(fold)] = {"file": file, "sha256": sha256(staging / file), "dtype": dtype}
        axes = first.get("inference_allowed_mirroring_axes")
        trainer = trainer or product_trainer_name(first["trainer_name"])
        configuration_name = first["init_args"]["configuration"]
        content = {"format": CARD_FORMAT, "name": output.name,
                   "dataset": model_folder.parent.name if model_folder.parent.name.startswith("Dataset") else None,
                   "trainer": trainer, "configuration": configuration_name,
                   "network_from_plans": _network_from_plans(trainer, plans, configuration_name),
                   "inference_allowed_mirroring_axes": None if axes is None else list(axes),
                   **(card or {}), "weights": weights}
        (staging / CARD).write_text(json.dumps(content, indent=2, default=float))
        for name, data in (("plans.json", plans), ("dataset.json", dataset_json)):
            (staging / name).write_text(json.dumps(data, indent=2))
        _publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PackedModel.open(output)
