"""Caries segmentation: the U-Net recipe learns synthetic lesions, masks come back at the image's
exact size, and the live tab answers through gradio_client."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import running_app
from gradio_client import Client, handle_file
from PIL import Image
from test_images import bomb_png

from core.bundle import load_bundle
from core.segmentation import Letterbox, letterbox_mask, restore
from tasks import caries as task
from training import caries, losses, masks_from_annotations
from training.datasets import segmentation_masks
from training.synthetic.radiographs import draw_radiograph, make_caries_dataset


def dice(truth: np.ndarray, predicted: np.ndarray) -> float:
    return 2 * (truth & predicted).sum() / max(truth.sum() + predicted.sum(), 1)


def lesions(bundle, path, threshold=None):
    """(masks at the picture's own size, area rows, summary): what the tab counts, through its own code."""
    from core.images import load_image
    from core.segmentation import letterbox

    picture = load_image(path)
    pixels, box = letterbox(picture, bundle.input_size[0])
    return task.from_output(bundle, picture, box, bundle.network("segmenter")(pixels[None])[0], threshold)


def test_the_unet_learns_lesions_far_above_both_baselines(caries_bundle, caries_data):
    """Held-out Dice of the *loaded* bundle, recomputed through the tab's own predict on the raw
    test files at their own size, against an empty mask (Dice 0) and an all-lesion mask."""
    metadata = json.loads((caries_bundle / "task.json").read_text())
    metrics = metadata["metrics"]
    assert metadata["activation"] == "sigmoid" and metadata["labels"] == ["caries"]
    bundle = load_bundle(caries_bundle, "caries")
    pairs, *_ = segmentation_masks.read_dataset(caries_data)
    _, _, test = caries.split(pairs, seed=1337)
    truth_all, predicted_all = [], []
    for pair in test:
        masks, table, _ = lesions(bundle, str(pair.image), metrics["threshold"])
        truth = np.asarray(Image.open(pair.mask)) == 1
        predicted = masks[..., 0]
        assert predicted.shape == truth.shape
        truth_all.append(truth.ravel())
        predicted_all.append(predicted.ravel())
    truth, predicted = np.concatenate(truth_all), np.concatenate(predicted_all)
    held_out = dice(truth, predicted)
    all_lesion = dice(truth, np.ones_like(truth))
    print(f"held-out Dice {held_out:.3f}; all-lesion baseline {all_lesion:.3f}; empty-mask baseline 0")
    assert held_out == pytest.approx(metrics["dice_mean"], abs=0.01)
    assert metrics["baselines"]["all_lesion_dice"] == pytest.approx(all_lesion, abs=1e-6)
    assert held_out > 0.6 and held_out > 10 * all_lesion


# Two exclusive lesion kinds that look different: dark irregular caries and bright compact fillings.
TWO_KINDS = dict(size=(96, 64), classes=("caries", "filling"), teeth=(2, 3), lesion_rate=0.7, filling_rate=0.6,
                 filling_scale=1.3)
TWO_KINDS_QUICK = ["--image-size", "64", "--depth", "3", "--width", "8", "--epochs", "12", "--patience", "12",
                   "--batch-size", "8", "--learning-rate", "0.01"]


def masks_from_vott(root, count, seed):
    """Synthetic two-kind radiographs -> VoTT export -> training.caries_masks: root/data."""
    images, export = make_caries_dataset(root / "raw", count=count, seed=seed, **TWO_KINDS)
    masks_from_annotations.main(["--annotations", str(export), "--images", str(images), "--out", str(root / "data")])
    return root / "data"


@pytest.fixture(scope="module")
def two_kinds_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_kinds")
    data = masks_from_vott(root / "train", count=40, seed=2)
    caries.main(["--data", str(data), "--out", str(root / "bundle"), *TWO_KINDS_QUICK])
    return root / "bundle", masks_from_vott(root / "held_out", count=16, seed=3)


@pytest.mark.slow
def test_softmax_over_exclusive_classes_learns_both_and_does_not_confuse_them(two_kinds_bundle):
    """Two exclusive classes -> softmax over background + classes. On fresh radiographs (another
    seed, through the tab's own predict at the image's size) each class is found where it is and
    not where the other one is."""
    path, held_out = two_kinds_bundle
    metadata = json.loads((path / "task.json").read_text())
    assert metadata["activation"] == "softmax" and metadata["labels"] == ["caries", "filling"]
    assert metadata["output"] == {"channels": 3, "background_channel": True}
    bundle = load_bundle(path, "caries")
    threshold = metadata["thresholds"]["global"]
    confusion = np.zeros((3, 3), np.int64)  # truth (background, caries, filling) x prediction
    for image in sorted((held_out / "images").iterdir()):
        masks, table, _ = lesions(bundle, str(image), threshold)
        truth = np.asarray(Image.open(held_out / "masks" / f"{image.stem}.png")).astype(np.int64)
        caries_mask, filling_mask = masks[..., 0], masks[..., 1]
        assert bundle.labels == ["caries", "filling"] and caries_mask.shape == truth.shape
        assert not (caries_mask & filling_mask).any()  # exclusive: one class per pixel
        assert [row[0] for row in table] == ["caries", "filling", "Any lesion"]
        predicted = caries_mask * 1 + filling_mask * 2
        np.add.at(confusion, (truth.ravel(), predicted.ravel()), 1)
    per_class = {name: 2 * confusion[k, k] / (confusion[k].sum() + confusion[:, k].sum())
                 for k, name in ((1, "caries"), (2, "filling"))}
    share = confusion[1:].sum(axis=1) / confusion.sum()
    all_lesion = float(np.mean(2 * share / (1 + share)))
    mean = float(np.mean(list(per_class.values())))
    # Of the lesion pixels found, the share given the other lesion's class.
    swapped = (confusion[1, 2] + confusion[2, 1]) / max(confusion[1:, 1:].sum(), 1)
    print(f"held-out Dice: caries {per_class['caries']:.3f}, filling {per_class['filling']:.3f}, mean {mean:.3f} "
          f"(all-lesion baseline {all_lesion:.3f}); swapped classes {swapped:.4f}; threshold {threshold}; "
          f"test split: {metadata['metrics']['dice_mean']:.3f}\nconfusion (truth x predicted):\n{confusion}")
    assert mean > 0.7 and mean > 10 * all_lesion
    assert per_class["caries"] > 0.6 and per_class["filling"] > 0.6
    assert swapped < 0.05
    assert metadata["metrics"]["dice_mean"] > 0.6  # the recipe's own (small) test split agrees


@pytest.mark.slow
def test_overlapping_classes_get_one_sigmoid_each(tmp_path):
    """Where shapes of two classes overlap, training.caries_masks adds one-hot .npy masks and the
    recipe switches to one sigmoid per class; a pixel may then carry both classes."""
    from training.synthetic.radiographs import make_radiographs, write_vott

    items = make_radiographs(tmp_path / "images", count=8, size=(48, 32), classes=("caries",), seed=4, teeth=(1, 2),
                             lesion_rate=1.0)
    # A "filling" drawn half over each caries: the classes overlap.
    items = [(name, size, shapes + [("filling", points + [3, 0]) for _, points in shapes]) for name, size, shapes in items]
    export = write_vott(tmp_path / "export.json", items)
    masks_from_annotations.main(["--annotations", str(export), "--images", str(tmp_path / "images"), "--out", str(tmp_path / "data")])
    assert len(list((tmp_path / "data" / "masks").glob("*.npy"))) == 8
    caries.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "bundle"), "--image-size", "32",
                 "--depth", "2", "--width", "4", "--epochs", "1", "--batch-size", "8"])
    metadata = json.loads((tmp_path / "bundle" / "task.json").read_text())
    assert metadata["activation"] == "sigmoid" and metadata["labels"] == ["caries", "filling"]
    assert metadata["output"] == {"channels": 2, "background_channel": False}
    bundle = load_bundle(tmp_path / "bundle", "caries")
    masks, table, _ = lesions(bundle, str(tmp_path / "images" / items[0][0]), 0.0)
    width, height = items[0][1]
    assert bundle.labels == ["caries", "filling"] and masks.shape == (height, width, 2)
    # Threshold 0 marks every pixel with every class: the sigmoids are independent.
    assert masks.all() and table[-1][1] == width * height


def test_bundle_metadata_card_and_overlays(caries_bundle):
    metadata = json.loads((caries_bundle / "task.json").read_text())
    assert metadata["task"] == "caries" and metadata["networks"] == {"segmenter": "."}
    assert metadata["input"]["size"] == [64, 64] and "letterbox" in metadata["preprocessing"]["resize"]
    assert 0 < metadata["thresholds"]["global"] < 1 and metadata["colors"]["caries"].startswith("#")
    assert set(metadata["metrics"]["per_class"]["caries"]) >= {"dice", "iou", "pixels_true", "pixels_predicted"}
    card = (caries_bundle / "README.md").read_text()
    assert "pipeline_tag: image-segmentation" in card and 'keras.saving.load_model("hf://' in card
    assert f"| Dice (mean over classes) | {metadata['metrics']['dice_mean']:.4f} |" in card
    overlays = sorted((caries_bundle / "overlays").iterdir())
    assert len(overlays) == 3 and all(f"overlays/{p.name}" in card for p in overlays)
    assert len(list((caries_bundle / "examples").iterdir())) == 3


@pytest.mark.parametrize("size, mode", [((257, 61), "L"), ((33, 401), "RGB"), ((1001, 7), "L"), ((5, 3), "RGB"),
                                        ((199, 131), "I;16")])
def test_the_mask_has_exactly_the_image_size(caries_bundle, tmp_path, size, mode):
    bundle = load_bundle(caries_bundle, "caries")
    rng = np.random.default_rng(0)
    grey, _ = draw_radiograph(rng, *size)
    if mode == "I;16":
        picture = Image.fromarray(grey.astype(np.uint16) * 257)
    else:
        picture = Image.fromarray(grey, "L").convert(mode)
    path = tmp_path / "xray.png"
    picture.save(path)
    painted, table, summary = task.predict(bundle, str(path), 0.5, 0.4)
    width, height = size
    assert painted.mode == "RGB" and max(painted.size) < 2 * task.PREVIEW_SIDE
    masks, _, _ = lesions(bundle, str(path), 0.5)
    mask = masks[..., 0]
    assert mask.shape == (height, width)
    assert table[0][0] == "caries" and table[0][1] == int(mask.sum())
    assert table[0][2] == pytest.approx(round(100 * mask.mean(), 3))


def test_images_over_2048_px_give_masks_at_the_decoded_size_and_say_so(caries_bundle, tmp_path):
    bundle = load_bundle(caries_bundle, "caries")
    grey, _ = draw_radiograph(np.random.default_rng(1), 600, 200)
    Image.fromarray(grey, "L").resize((3000, 1000)).save(tmp_path / "big.png")
    masks, _, summary = lesions(bundle, str(tmp_path / "big.png"))
    assert masks.shape[:2] == (683, 2048)  # the decoded size: areas are counted there
    assert "3000 x 1000 upload was downscaled to 2048 x 683" in summary
    painted, _, _ = task.predict(bundle, str(tmp_path / "big.png"))
    assert painted.size == (1024, 342)  # what the page shows: halved


def test_letterbox_restores_a_mask_exactly_when_the_network_side_is_larger():
    mask = np.zeros((7, 13, 1), np.float32)
    mask[2:5, 3:11] = 1
    boxed = letterbox_mask(mask, 64)
    back = restore(boxed.astype(np.float32), Letterbox.fit(13, 7, 64)) >= 0.5
    assert back.shape == (7, 13, 1) and np.array_equal(back, mask >= 0.5)


def test_losses_dice_iou_and_weighted_cross_entropy():
    import keras

    truth = np.zeros((1, 4, 4, 1), np.float32)
    truth[0, :2, :2] = 1
    for kind in ("dice", "iou"):
        loss = losses.SegmentationLoss(kind, "sigmoid")
        assert float(loss(truth, truth)) < 0.05 and float(loss(truth, 1 - truth)) > 0.9
    plain = losses.SegmentationLoss("bce", "sigmoid")
    weighted = losses.SegmentationLoss("ce", "sigmoid", class_weights=[5.0])
    guess = np.full_like(truth, 0.3)
    assert float(weighted(truth, guess)) > float(plain(truth, guess))
    # Softmax: background + one class; the overlap terms ignore the background channel.
    onehot = np.concatenate([1 - truth, truth], axis=-1)
    assert float(losses.SegmentationLoss("dice+ce", "softmax")(onehot, np.clip(onehot, 0.01, 0.99))) < 0.1
    # Registered, so a compiled model's config round-trips without custom_objects.
    config = keras.saving.serialize_keras_object(weighted)
    assert keras.saving.deserialize_keras_object(config).class_weights == [5.0]


def test_output_and_network_are_chosen_from_the_data(tmp_path):
    # Two exclusive classes -> softmax over background + classes; a pretrained-encoder U-Net builds.
    model, _ = caries.build_unet(64, 3, "softmax", depth=4, width=8, backbone="mobilenetv2", weights="none")
    assert model.output_shape == (None, 64, 64, 3)
    with pytest.raises(SystemExit, match="multiple of 2\\^depth"):
        caries.build_unet(60, 1, "sigmoid", depth=3)
    # A plain images/ + masks/ pair with 0/255 masks and no classes.json; one mask of the wrong size.
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for n in range(3):
        Image.new("L", (20, 10), 100).save(tmp_path / "images" / f"x{n}.png")
        mask = np.zeros((10, 20), np.uint8)
        mask[2:5, 3:9] = 255
        Image.fromarray(mask).save(tmp_path / "masks" / f"x{n}_mask.png")
    Image.new("L", (9, 9), 0).save(tmp_path / "masks" / "x2_mask.png")
    Image.new("L", (20, 10), 100).save(tmp_path / "images" / "lonely.png")
    pairs, labels, origin, overlapping, report = segmentation_masks.read_dataset(tmp_path)
    assert labels == ["class 1"] and not overlapping and "no classes.json" in origin
    assert report["images_without_mask"] == ["lonely.png"]
    source = caries.letterboxed(pairs, 1, 32, mirror=False, cache=None)  # as training streams them
    kept = [decoded for decoded in map(source.decoded, range(len(source))) if decoded is not None]
    y = np.stack([mask for _, mask in kept])
    skipped = [f"{Path(path).name}: {reason}" for path, reason in source.problems.items()]
    assert len(kept) == 2 and y.shape == (2, 32, 32, 1) and y.sum() > 0
    assert skipped == ["x2.png: mask is 9 x 9, image is 20 x 10"]
    with pytest.raises(SystemExit, match="images/ and masks/"):
        caries.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])


@pytest.fixture(scope="module")
def caries_app(caries_bundle, models_with_module):
    root = models_with_module(caries=caries_bundle)
    with running_app(root) as url:
        yield url, Client(url, verbose=False)


@pytest.fixture(scope="module")
def models_with_module(tmp_path_factory):
    def make(**bundles):
        root = tmp_path_factory.mktemp("caries_app") / "models"
        root.mkdir()
        for place, bundle in bundles.items():
            shutil.copytree(bundle, root / place)
        return root

    return make


def test_live_endpoint_returns_the_overlay_and_the_areas(caries_app, caries_bundle, tmp_path):
    _, client = caries_app
    example = sorted((caries_bundle / "examples").iterdir())[0]
    width, height = Image.open(example).size
    painted, table, summary = client.predict(handle_file(str(example)), 0.5, 0.6, api_name="/caries")
    # gradio_client downloads the painted radiograph: one picture, the lesions in the class's colour.
    shown = np.asarray(Image.open(painted).convert("RGB"), np.float32)
    assert shown.shape[:2] == (height, width)  # small enough to be shown at its own size
    bundle = load_bundle(caries_bundle, "caries")
    masks, expected, _ = lesions(bundle, str(example), 0.5)
    original = np.asarray(Image.open(example).convert("RGB"), np.float32)
    # Where a lesion is marked the colour moved the pixel; elsewhere only JPEG's noise did.
    moved = np.abs(shown - original).mean(axis=-1)
    assert masks[..., 0].any() and moved[masks[..., 0]].mean() > 4 * moved[~masks[..., 0]].mean()
    assert table["headers"] == ["Class", "Pixels", "% of image"]
    row = table["data"][0]
    assert row[0] == "caries" and row[1] == expected[0][1] == int(masks[..., 0].sum()) > 0
    assert row[2] == pytest.approx(100 * masks[..., 0].mean(), abs=1e-3)
    assert "% of the image" in summary
    # A lower threshold never marks less.
    _, lower, _ = client.predict(handle_file(str(example)), 0.05, 0.6, api_name="/caries")
    assert lower["data"][0][1] >= row[1]


def test_live_endpoint_refuses_bad_images_clearly_and_keeps_serving(caries_app, caries_bundle, tmp_path):
    _, client = caries_app
    (tmp_path / "notes.png").write_bytes(b"<html>not a radiograph</html>")
    (tmp_path / "huge.png").write_bytes(bomb_png(30000, 30000))
    example = sorted((caries_bundle / "examples").iterdir())[0]
    for name, message in (("notes.png", "not an image"), ("huge.png", "megapixels")):
        with pytest.raises(Exception) as error:
            client.predict(handle_file(str(tmp_path / name)), 0.5, 0.5, api_name="/caries")
        assert message in str(error.value) and "Traceback" not in str(error.value)
        assert client.predict(handle_file(str(example)), 0.5, 0.5, api_name="/caries")[1]["data"]
