"""Grad-CAM: a trained network looks where the answer is; an untrained one does not; every
architecture of ours (nested backbones, two outputs) can be explained."""

import keras
import numpy as np
import pytest
from PIL import Image

from core import interpret
from core.bundle import load_bundle
from training import age_gender, backbones, classification, dog_breed
from training.synthetic.regions import CLASSES, draw_region_picture, make_region_dogs, quadrant_mask

SIZE = 64


@pytest.fixture(scope="module")
def region_bundle(tmp_path_factory):
    """The dog-breed recipe, trained on pictures whose class is a coloured square in a known quadrant
    (with a grey distractor square in another)."""
    root = tmp_path_factory.mktemp("regions")
    data = make_region_dogs(root / "data", per_class=50, size=SIZE)
    dog_breed.main(["--data", str(data), "--out", str(root / "bundle"), "--backbone", "conv4-gap", "--weights",
                    "none", "--image-size", str(SIZE), "--epochs", "12", "--patience", "8", "--fine-tune-epochs",
                    "0", "--batch-size", "16"])
    return load_bundle(root / "bundle")


def where_it_looks(network, count: int = 40):
    """Over fresh pictures, the heatmap's share in the quadrant that decides the class, and how often
    that quadrant holds more of it than the distractor's quadrant."""
    rng = np.random.default_rng(5)
    shares, wins = [], []
    for i in range(count):
        label = i % 2
        picture, distractor = draw_region_picture(rng, label, SIZE)
        heat = interpret.gradcam(network, np.asarray(picture, np.float32), label)
        assert heat.shape == (SIZE, SIZE) and 0.0 <= heat.min() and heat.max() <= 1.0
        decisive = heat[quadrant_mask(CLASSES[label][1], SIZE)].sum()
        shares.append(decisive / max(heat.sum(), 1e-9))
        wins.append(decisive > heat[quadrant_mask(distractor, SIZE)].sum())
    return float(np.mean(shares)), float(np.mean(wins))


def test_a_trained_network_looks_at_the_square_that_decides(region_bundle):
    assert region_bundle.metadata["metrics"]["top1_accuracy"] >= 0.9
    share, wins = where_it_looks(region_bundle.network("classifier"))
    # A quadrant is a quarter of the picture: uniform mass would put 0.25 there.
    assert share >= 0.6, share
    assert wins >= 0.9, wins  # the decisive square, not the grey one as bright

    # Baseline: the same architecture never trained, over four initialisations (any one of them
    # happens to favour some places): near uniform, and no preference for the decisive square.
    untrained = []
    for seed in range(4):
        keras.utils.set_random_seed(seed)
        model, _ = classification.build_classifier(len(CLASSES), SIZE, "conv4-gap", "none", "untrained",
                                                   dense_units=512)
        untrained.append(where_it_looks(model))
    untrained_share, untrained_wins = np.mean(untrained, axis=0)
    assert abs(untrained_share - 0.25) <= 0.15, untrained
    assert abs(untrained_wins - 0.5) <= 0.25, untrained
    assert share - untrained_share >= 0.3


def test_explain_overlays_the_heatmap_on_the_picture(region_bundle, tmp_path):
    rng = np.random.default_rng(9)
    picture, _ = draw_region_picture(rng, 0, 200)
    path = tmp_path / "upload.png"
    picture.save(path)
    shown = interpret.explain(region_bundle, path)  # the network's top class, as the tab asks
    assert shown.size == picture.size and shown.mode == "RGB"
    # The colour map is warm (red) where the heat is: over the decisive top-left quadrant.
    pixels = np.asarray(shown, np.float32) - np.asarray(picture, np.float32)
    assert pixels[:100, :100, 0].mean() > pixels[100:, 100:, 0].mean()


def test_overlay_blends_a_colour_map_by_opacity():
    picture = Image.new("RGB", (40, 20), (10, 200, 30))
    heat = np.zeros((8, 8), np.float32)
    heat[:, 4:] = 1.0
    assert np.array_equal(np.asarray(interpret.overlay(picture, heat, 0.0)), np.asarray(picture))
    full = np.asarray(interpret.overlay(picture, heat, 1.0)).astype(int)
    assert full.shape == (20, 40, 3)
    assert full[10, 38, 0] > 100 and full[10, 38, 2] < 50  # hot: red
    assert full[10, 1, 2] > 100 and full[10, 1, 0] < 50  # cold: blue


def saved_and_loaded(model, tmp_path):
    """The model as a bundle holds it: saved and loaded again (its layers then carry several graphs)."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return keras.saving.load_model(path, compile=False, safe_mode=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*backbones.APPLICATIONS, *backbones.SCRATCH])
def test_every_backbone_can_be_explained(name, tmp_path):
    """The feature map is found inside the nested backbone, the rebuilt network computes exactly the
    bundle's output, and a heatmap comes out at the input size."""
    side = {"xception": 71, "conv4-dense": 96}.get(name, 48)
    model, _ = classification.build_classifier(3, side, name, "none", "explained", dense_units=16)
    model = saved_and_loaded(model, tmp_path)
    pixels = np.random.default_rng(0).uniform(0, 255, (side, side, 3)).astype(np.float32)
    features, scores = interpret.feature_model(model)(pixels[None], training=False)
    assert len(features.shape) == 4 and features.shape[1] > 1
    np.testing.assert_allclose(np.asarray(scores), np.asarray(model(pixels[None], training=False)), atol=1e-5)
    heat = interpret.gradcam(model, pixels, 2)
    assert heat.shape == (side, side) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0 and np.isfinite(heat).all()


@pytest.mark.slow
def test_the_two_output_age_and_gender_network_can_be_explained(tmp_path):
    model, _ = age_gender.build_gender_age_network(71, "xception", "none", age_mean=35.0, age_std=12.0)
    model = saved_and_loaded(model, tmp_path)
    pixels = np.random.default_rng(1).uniform(0, 255, (71, 71, 3)).astype(np.float32)
    assert interpret.feature_layer(model).name == "block14_sepconv2_act"
    _, outputs = interpret.feature_model(model)(pixels[None], training=False)
    expected = model(pixels[None], training=False)
    for key in ("gender", "age"):
        np.testing.assert_allclose(np.asarray(outputs[key]), np.asarray(expected[key]), atol=1e-4)
    for output, index in (("gender", 0), ("gender", None), ("age", 0)):
        heat = interpret.gradcam(model, pixels, index, output=output)
        assert heat.shape == (71, 71) and 0.0 <= heat.min() and heat.max() <= 1.0
    with pytest.raises(ValueError, match="gender, age|age, gender"):
        interpret.gradcam(model, pixels, 0)
    with pytest.raises(ValueError, match="outside"):
        interpret.gradcam(model, pixels, 5, output="gender")
