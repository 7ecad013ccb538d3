"""Models: packing without pickle, installing nnU-Net zips, exporting stock model folders, the bundled model."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nnunet_tongue.inference.segmenter import TongueSegmenter
from nnunet_tongue.models import command
from nnunet_tongue.models.packed import ModelError, PackedModel, pack
from nnunet_tongue.models.store import (
    BUNDLED_ROOT,
    DEFAULT_MODEL,
    available_models,
    find_model,
    install_zip,
    remove_model,
)
from nnunet_tongue.synthetic import make_tongue_photo

TRAINING_SIZE = 96


@pytest.fixture()
def models_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "models_home"
    monkeypatch.setenv("NNUNET_TONGUE_MODELS", str(home))
    return home


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [make_tongue_photo(rng, 96, 64)[0] for _ in range(3)]


@pytest.fixture(scope="module")
def stock_segmenter(trained_tongue_model) -> TongueSegmenter:
    return TongueSegmenter(trained_tongue_model.model_folder, folds=[0], device="cpu", max_size=TRAINING_SIZE)


@pytest.fixture(scope="module")
def exported_zip(trained_tongue_model, tmp_path_factory) -> Path:
    """The tiny model as nnU-Net's own exporter writes it."""
    path = tmp_path_factory.mktemp("zip") / "model.zip"
    trained_tongue_model.nnunet.run("nnUNetv2_export_model_to_zip", "-d", str(trained_tongue_model.dataset_id),
                                    "-o", str(path), "-c", "2d", "-tr", trained_tongue_model.trainer, "-f", "0")
    return path


def _probabilities(segmenter: TongueSegmenter, photos) -> list[np.ndarray]:
    return [segmenter.predict(p).probability for p in photos]


def test_packed_float32_model_predicts_exactly_as_its_nnunet_folder(trained_tongue_model, stock_segmenter, photos,
                                                                    tmp_path):
    packed = pack(trained_tongue_model.model_folder, tmp_path / "m", folds=[0])
    segmenter = TongueSegmenter(packed.folder, device="cpu", max_size=TRAINING_SIZE)
    for ours, stock in zip(_probabilities(segmenter, photos), _probabilities(stock_segmenter, photos)):
        assert np.array_equal(ours, stock)


def test_packed_float16_model_gives_the_same_masks(trained_tongue_model, stock_segmenter, photos, tmp_path):
    packed = pack(trained_tongue_model.model_folder, tmp_path / "m", folds=[0], dtype="float16")
    segmenter = TongueSegmenter(packed.folder, device="cpu", max_size=TRAINING_SIZE)
    for photo in photos:
        a, b = segmenter.segment(photo), stock_segmenter.segment(photo)
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.999


def test_packed_model_records_the_product_trainer_not_the_budget(trained_tongue_model, tmp_path):
    packed = pack(trained_tongue_model.model_folder, tmp_path / "m", folds=[0])
    assert trained_tongue_model.trainer != "nnUNetTrainerTUNet"
    assert packed.trainer == "nnUNetTrainerTUNet"
    assert packed.card["dataset"] == "Dataset999_SyntheticTongue"


def test_plug_in_networks_are_built_from_the_plans_without_their_trainer(trained_tongue_model, tmp_path):
    packed = pack(trained_tongue_model.model_folder, tmp_path / "m", folds=[0])
    assert packed.card["network_from_plans"] is True
    direct = packed.build_network()
    packed.card["network_from_plans"] = False  # as for a trainer the plug-in does not know: the trainer builds it
    by_trainer = packed.build_network()
    by_trainer.load_state_dict(direct.state_dict())
    x = torch.randn(1, 3, 64, 96)
    torch.testing.assert_close(direct.eval()(x), by_trainer.eval()(x))


def test_weights_shared_by_two_module_names_are_stored_once_and_restored(trained_tongue_model, tmp_path):
    packed = pack(trained_tongue_model.model_folder, tmp_path / "m", folds=[0])
    source = torch.load(trained_tongue_model.model_folder / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                        weights_only=False)["network_weights"]
    from safetensors import safe_open

    with safe_open(str(packed.folder / "fold_0.safetensors"), "pt") as f:
        stored = set(f.keys())
    assert len(stored) < len(source)  # aliases (conv and all_modules.0) are not stored twice
    restored = packed.weights(0)
    assert restored.keys() == source.keys()
    assert all(torch.equal(restored[k], source[k]) for k in source)


def test_damaged_weights_are_refused_before_use(trained_tongue_model, tmp_path):
    packed = pack(trained_tongue_model.model_folder, tmp_path / "m", folds=[0])
    weights = packed.folder / "fold_0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the hash.*reinstall"):
        TongueSegmenter(packed.folder, device="cpu")


class _Payload:
    """Anything pickle would have to import to rebuild."""


def test_a_checkpoint_that_needs_code_to_load_is_not_packed(trained_tongue_model, tmp_path):
    folder = tmp_path / "Dataset999_X" / "T__nnUNetPlans__2d"
    (folder / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        (folder / name).write_bytes((trained_tongue_model.model_folder / name).read_bytes())
    checkpoint = torch.load(trained_tongue_model.model_folder / "fold_0" / "checkpoint_final.pth",
                            map_location="cpu", weights_only=False)
    checkpoint["extra"] = _Payload()
    with open(folder / "fold_0" / "checkpoint_final.pth", "wb") as f:
        pickle.dump(checkpoint, f)  # torch.save would do the same for the payload
    with pytest.raises(ModelError, match="without running its code"):
        pack(folder, tmp_path / "packed")
    assert not (tmp_path / "packed").exists()
    assert not list(tmp_path.glob(".packed.*"))  # no staging left behind


def test_nnunet_zip_installs_lists_and_segments_like_the_folder(exported_zip, models_home, stock_segmenter, photos,
                                                                capsys):
    assert command.main(["install", str(exported_zip), "--name", "tiny"]) == 0
    assert available_models()[-1].name == "tiny" and available_models()[-1].origin == "installed"
    assert find_model("tiny") == models_home / "tiny"
    assert command.main([]) == 0
    listing = capsys.readouterr().out
    assert "tiny (installed)" in listing and f"{DEFAULT_MODEL} (bundled, default)" in listing
    segmenter = TongueSegmenter(find_model("tiny"), device="cpu", max_size=TRAINING_SIZE)
    for ours, stock in zip(_probabilities(segmenter, photos), _probabilities(stock_segmenter, photos)):
        assert np.array_equal(ours, stock)


def test_installing_over_an_installed_model_needs_overwrite(exported_zip, models_home):
    install_zip(exported_zip, "tiny")
    with pytest.raises(FileExistsError, match="--overwrite"):
        install_zip(exported_zip, "tiny")
    assert install_zip(exported_zip, "tiny", overwrite=True)[0].name == "tiny"
    assert [p.name for p in models_home.iterdir()] == ["tiny"]  # no staging folders left


def test_zip_member_escaping_the_archive_is_refused(exported_zip, models_home, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(exported_zip) as source, zipfile.ZipFile(evil, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr("../../outside.txt", "x")
    with pytest.raises(ModelError, match="outside the archive"):
        install_zip(evil)
    assert not models_home.exists() or not any(models_home.iterdir())


def test_zip_without_a_model_is_refused_with_the_fix(tmp_path, models_home):
    empty = tmp_path / "notes.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", "hello")
    assert command.main(["install", str(empty)]) == 2
    with pytest.raises(ModelError, match="nnUNetv2_export_model_to_zip"):
        install_zip(empty)


def test_bundled_models_cannot_be_removed_installed_ones_can(exported_zip, models_home):
    with pytest.raises(ModelError, match="bundled"):
        remove_model(DEFAULT_MODEL)
    install_zip(exported_zip, "tiny")
    remove_model("tiny")
    assert not (models_home / "tiny").exists()


def test_unknown_model_name_lists_the_known_ones(models_home):
    with pytest.raises(ModelError, match=f"known: {DEFAULT_MODEL}"):
        find_model("no-such-model")


def test_export_writes_a_folder_stock_nnunet_predicts_with(trained_tongue_model, stock_segmenter, tmp_path):
    packed = pack(trained_tongue_model.model_folder, tmp_path / "m", folds=[0])
    folder = packed.export(tmp_path / "results")
    assert folder == tmp_path / "results" / "Dataset999_SyntheticTongue" / "nnUNetTrainerTUNet__nnUNetPlans__2d"
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    source = torch.load(trained_tongue_model.model_folder / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                        weights_only=False)["network_weights"]
    assert all(torch.equal(checkpoint["network_weights"][k], source[k]) for k in source)
    photos_in, out = tmp_path / "in", tmp_path / "out"
    photos_in.mkdir()
    png = sorted((trained_tongue_model.raw_dataset / "imagesTs").glob("*.png"))[0]
    (photos_in / png.name).write_bytes(png.read_bytes())
    trained_tongue_model.nnunet.run("nnUNetv2_predict_from_modelfolder", "-m", str(folder), "-f", "0", "-i",
                                    str(photos_in), "-o", str(out), "-device", "cpu", "--disable_tta")
    stock = np.asarray(Image.open(out / png.name.replace("_0000", ""))) > 0
    photo = np.asarray(Image.open(png).convert("RGB"))
    ours = TongueSegmenter(trained_tongue_model.model_folder, folds=[0], device="cpu", max_size=0,
                           postprocess=False, rescale=False).segment(photo)
    assert (stock != ours).sum() <= 0.001 * ours.size  # the same up to nnU-Net's float16 accumulation


def test_export_refuses_to_replace_a_model_folder(trained_tongue_model, tmp_path):
    packed = pack(trained_tongue_model.model_folder, tmp_path / "m", folds=[0])
    packed.export(tmp_path / "results")
    with pytest.raises(FileExistsError, match="exists"):
        packed.export(tmp_path / "results")


# --- the bundled model ------------------------------------------------------------------------------------------


def test_bundled_model_fits_the_wheel_limit_and_passes_its_hash_check():
    model = PackedModel.open(BUNDLED_ROOT / DEFAULT_MODEL)
    size = sum(f.stat().st_size for f in model.folder.iterdir())
    assert size <= 30 * 2**20
    assert model.card["weights"]["all"]["dtype"] == "float16"
    weights = model.weights("all")  # raises if the file does not match its hash
    network = model.build_network()
    network.load_state_dict(weights)  # every parameter present, shapes as the plans build them


def test_bundled_model_card_states_data_licences_use_and_held_out_figures():
    card = PackedModel.open(BUNDLED_ROOT / DEFAULT_MODEL).card
    assert {"BioHit", "NTUST"} <= set(card["training_data"])
    assert all(entry["licence"] for entry in card["training_data"].values())
    assert "not a medical device" in card["intended_use"]
    for source in ("biohit", "ntust"):
        assert card["figures"]["test"][source]["n_cases"] > 0
        assert 0 < card["figures"]["test"][source]["dice"]["mean"] <= 1


def test_docs_state_the_bundled_model_training_budget_its_card_records():
    training = PackedModel.open(BUNDLED_ROOT / DEFAULT_MODEL).card["training"]
    page = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| training |"))
    assert f"{training['epochs']} epochs × {training['iterations_per_epoch']} iterations" in row
    assert f"batch {training['batch_size']}" in row
    assert f"{training['training_photos_max_size_px']} px" in row


def test_bundled_model_is_segmented_at_the_size_its_card_and_docs_state():
    from nnunet_tongue.conversion import segment_max_size

    model = PackedModel.open(BUNDLED_ROOT / DEFAULT_MODEL)
    size = model.card["input_scale"]["segment_max_size_px"]
    assert segment_max_size(model.dataset_json) == size  # what segment and the app feed it at by default
    page = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| input scale |"))
    assert f"downscaled to {size} px" in row


@pytest.mark.realdata
@pytest.mark.parametrize("source", ["biohit", "ntust"])
def test_segment_without_a_model_uses_the_bundled_one_on_real_photos(shared_data, source, tmp_path, capsys):
    from nnunet_tongue.evaluation.metrics import dice
    from nnunet_tongue.inference.segment import main

    cases = json.loads((shared_data / f"{source}_split.json").read_text())["test"][:3]
    photos = [shared_data / source / "images" / f"{case}.jpg" for case in cases]
    assert main(["-i", *map(str, photos), "-o", str(tmp_path / "out"), "-device", "cpu", "--no-progress"]) == 0
    for case in cases:
        with Image.open(shared_data / source / "masks" / f"{case}.png") as im:
            truth = np.asarray(im) > 0
        if truth.mean() > 0.5:  # an inverted upstream BioHit mask (tongue = 0)
            truth = ~truth
        predicted = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{case}.png")) > 0
        assert dice(predicted, truth) > 0.9


def test_the_app_segments_with_the_bundled_model_when_no_model_is_named():
    from nnunet_tongue.app import Models, build_parser

    assert build_parser().parse_args([]).model == DEFAULT_MODEL
    assert Models("cpu").get(DEFAULT_MODEL).packed.name == DEFAULT_MODEL
