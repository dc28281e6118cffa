"""Comparing backbones as the dog-breed course does: `--backbone A B` trains each on the same split,
writes the course's table into the bundle and its card, and keeps the best by validation accuracy."""

import csv
import json
import shlex

import keras

from core.bundle import load_bundle


def test_the_table_is_written_and_the_best_by_validation_is_kept(dog_comparison):
    out, _, _, printed = dog_comparison
    metadata = json.loads((out / "task.json").read_text())
    comparison = metadata["comparison"]
    rows = {row["backbone"]: row for row in csv.DictReader((out / "comparison.csv").open())}
    assert list(rows) == ["conv4-gap", "conv3-dense"] == [row["backbone"] for row in comparison["rows"]]
    for row in rows.values():
        assert int(row["parameters"]) > 0 and float(row["fit_seconds"]) > 0
        for key in ("train_accuracy", "validation_accuracy", "test_accuracy", "test_recall_macro"):
            assert 0 <= float(row[key]) <= 1, row

    # Kept: the higher validation accuracy (the first listed on a tie), never the test's.
    best = max(comparison["rows"], key=lambda row: row["validation_accuracy"])["backbone"]
    assert comparison["kept"] == metadata["backbone"] == best and comparison["chosen_by"] == "validation accuracy"
    network = keras.saving.load_model(out, safe_mode=True, compile=False)
    assert best.replace("-", "_") in {layer.name for layer in network.layers}  # the kept backbone's network
    assert load_bundle(out, "dog_breed").labels == metadata["labels"]

    # The kept network learned: six breeds, the most frequent class scores 1/6.
    metrics = metadata["metrics"]
    assert metrics["top1_accuracy"] > metrics["baselines"]["majority_class_accuracy"] + 0.3, metrics["top1_accuracy"]
    kept_row = next(row for row in comparison["rows"] if row["backbone"] == best)
    assert kept_row["test_accuracy"] == metrics["top1_accuracy"]  # the reloaded network is the one compared
    assert kept_row["parameters"] == network.count_params()

    card = (out / "README.md").read_text()
    table = (out / "comparison.md").read_text()
    assert table in card and "| backbone | parameters | time to fit (s) | train accuracy |" in table
    assert f"Kept: **{best}**, the best validation accuracy" in card

    # The command recorded runs again as it is: both names after one --backbone.
    assert "--backbone conv4-gap conv3-dense" in metadata["provenance"]["command"]
    assert shlex.split(metadata["provenance"]["command"])[:3] == ["python", "-m", "training.dog_breed"]
    assert not out.with_name(out.name + ".work").exists()  # every backbone's work folder is gone


def test_an_interrupted_comparison_resumes_at_the_backbone_it_stopped_at(dog_comparison):
    """The first attempt stopped at its second backbone (a weights file that is not there); the
    second attempt did not train the first backbone again."""
    _, _, _, printed = dog_comparison
    assert "conv4-gap: compared in an earlier run" in printed
    assert "Comparing backbones: conv3-dense" in printed and "Comparing backbones: conv4-gap" not in printed
