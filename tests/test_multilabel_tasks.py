"""Hashtags (HARRISON layout) and movie genres (poster CSV layout): readers, training, live endpoints."""

import json
import shutil

import numpy as np
import pytest
from conftest import ROOT, running_app
from gradio_client import Client, handle_file

from core.bundle import load_bundle
from core.multilabel import label_thresholds
from tasks import hashtags as hashtags_task
from training.datasets import harrison, movie_posters
from training.synthetic.motifs import draw_motifs

REAL_HARRISON = ROOT.parent / "shared" / "datasets" / "harrison-labels"


# --- learning, in each real layout -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("bundle_fixture", ["hashtag_bundle", "genre_bundle"])
def test_learns_far_above_both_baselines(bundle_fixture, request):
    metadata = json.loads((request.getfixturevalue(bundle_fixture) / "task.json").read_text())
    metrics = metadata["metrics"]
    baseline = metrics["baselines"]["most_frequent_f1_micro"]
    assert metrics["f1_micro"] > 0.7, metrics["f1_micro"]
    assert metrics["f1_micro"] > baseline + 0.3, (metrics["f1_micro"], baseline)  # all-negative scores 0
    assert metrics["mean_average_precision"] > 0.8
    assert {"precision_at_1", "recall_at_5", "f1_macro", "per_label"} <= set(metrics)


@pytest.mark.slow
@pytest.mark.parametrize("bundle_fixture", ["hashtag_bundle", "genre_bundle"])
def test_thresholds_round_trip_through_the_bundle(bundle_fixture, request):
    path = request.getfixturevalue(bundle_fixture)
    written = json.loads((path / "task.json").read_text())["thresholds"]
    bundle = load_bundle(path)
    assert bundle.metadata["thresholds"] == written
    assert set(written["per_label"]) == set(bundle.labels) and 0 < written["global"] < 1
    per_label = label_thresholds(bundle.metadata)
    assert per_label.tolist() == [written["per_label"][label] for label in bundle.labels]
    card = (path / "README.md").read_text()
    assert "F1 (micro)" in card and "baseline F1, most frequent labels" in card and "| threshold |" in card


# --- bad rows are reported with their line numbers, and the run completes --------------

def test_harrison_bad_rows_are_reported_by_line(hashtag_bundle):
    report = json.loads((hashtag_bundle / "task.json").read_text())["dataset"]["report"]
    assert report["empty_tag_lines"] == [5]
    assert report["unknown_tag_lines"] == [7] and report["unknown_tags"] == {"notinvocab": 1}
    assert len(report["missing_images"]) == 1 and report["missing_images"][0].startswith("line 9: ")
    assert len(report["unreadable_images"]) == 1 and report["unreadable_images"][0].startswith("line 11: ")
    assert report["lines"] == 240 and report["kept"] == 240 - 3  # line 7 keeps its known tags


def test_poster_bad_rows_are_reported_by_line(genre_bundle):
    report = json.loads((genre_bundle / "task.json").read_text())["dataset"]["report"]
    assert [entry.split(":")[0] for entry in report["genre_mismatch"]] == ["line 4"]
    assert "Western" in report["genre_mismatch"][0]
    assert [entry.split(":")[0] for entry in report["missing_images"]] == ["line 6"]
    assert [entry.split(":")[0] for entry in report["malformed_rows"]] == ["line 8"]
    assert [entry.split(":")[0] for entry in report["unreadable_images"]] == ["line 10"]


def test_genre_columns_come_from_the_header(tmp_path):
    (tmp_path / "Images").mkdir()
    (tmp_path / "train.csv").write_text("Id,Genre,Western,Noir\nm1,\"['Noir']\",0,1\n")
    draw_motifs([0], np.random.default_rng(0)).save(tmp_path / "Images" / "m1.jpg")
    rows, genres, report = movie_posters.read_posters(tmp_path)
    assert genres == ["Western", "Noir"] and rows[0][2] == [1] and report["genre_mismatch"] == []


# --- the HARRISON reader on the real published label files ------------------------------

@pytest.mark.skipif(not REAL_HARRISON.is_dir(), reason="shared/datasets/harrison-labels is not beside the checkout")
def test_harrison_reader_on_the_real_label_files(tmp_path):
    data = tmp_path / "harrison"
    data.mkdir()
    for name in ("data_list.txt", "tag_list.txt", "vocab_index.txt"):
        shutil.copy(REAL_HARRISON / name, data / name)
    # Real labels, generated images for the first 40 entries only.
    rng = np.random.default_rng(0)
    for path in (data / "data_list.txt").read_text().splitlines()[:40]:
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        draw_motifs([0], rng, (32, 32)).save(data / path)
    rows, vocabulary, report = harrison.read_harrison(data)
    assert len(vocabulary) == 997 and vocabulary[:3] == ["love", "friend", "beach"]
    assert report["lines"] == 57383 and report["unknown_tag_count"] == 0 and report["empty_tag_lines"] == []
    assert len(rows) == 40 and len(report["missing_images"]) == 57383 - 40
    first_line, first_path, first_tags = rows[0]
    assert first_line == 1 and first_path == data / "instagram_dataset/sea/image_50.jpg"
    assert sorted(vocabulary[i] for i in first_tags) == sorted(["sea", "instapic", "instagram", "trip", "travel"])
    kept, top = harrison.keep_top_tags(rows, vocabulary, 10, report)
    assert len(top) == 10 and all(tags for _, _, tags in kept)


# --- the live endpoints ------------------------------------------------------------------

@pytest.fixture(scope="module")
def multilabel_app(hashtag_bundle, genre_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("multilabel_app") / "models"
    shutil.copytree(hashtag_bundle, root / "hashtags")
    shutil.copytree(genre_bundle, root / "movie_genres")
    with running_app(root) as url:
        yield Client(url, verbose=False)


def test_hashtags_endpoint_and_its_threshold(multilabel_app, harrison_data):
    photo = harrison_data / (harrison_data / "data_list.txt").read_text().splitlines()[20]
    truth = (harrison_data / "tag_list.txt").read_text().splitlines()[20].split()
    tags, line = multilabel_app.predict(handle_file(str(photo)), 0.5, api_name="/hashtags")
    assert {c["label"] for c in tags["confidences"]} == set(truth)
    assert sorted(line.split()) == sorted(f"#{tag}" for tag in truth)
    loose, _ = multilabel_app.predict(handle_file(str(photo)), 0.01, api_name="/hashtags")
    strict, strict_line = multilabel_app.predict(handle_file(str(photo)), 1.0, api_name="/hashtags")
    assert len(loose["confidences"]) > len(truth)
    assert strict_line == "" and all(c["label"].endswith("(below threshold)") for c in strict["confidences"])
    assert len(strict["confidences"]) == hashtags_task.FALLBACK_K


def test_movie_genres_endpoint_and_its_threshold(multilabel_app, poster_data):
    import csv

    header, *rows = csv.reader((poster_data / "train.csv").open())
    row = rows[29]
    truth = {genre for genre, flag in zip(header[2:], row[2:]) if flag == "1"}
    poster = poster_data / "Images" / f"{row[0]}.jpg"
    genres, verdict = multilabel_app.predict(handle_file(str(poster)), 0.5, api_name="/movie_genres")
    assert len(genres["confidences"]) == 3
    assert truth <= {c["label"] for c in genres["confidences"]}
    assert verdict.startswith("Passes the threshold:") and all(g in verdict for g in truth)
    _, strict = multilabel_app.predict(handle_file(str(poster)), 1.0, api_name="/movie_genres")
    assert strict.startswith("None of the three passes")


def test_bad_input_on_a_multilabel_tab(multilabel_app, tmp_path):
    bad = tmp_path / "poster.jpg"
    bad.write_bytes(b"")
    with pytest.raises(Exception, match="empty"):
        multilabel_app.predict(handle_file(str(bad)), 0.5, api_name="/movie_genres")
