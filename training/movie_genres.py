"""Movie genres from a poster: multi-label classification.

    python -m training.movie_genres --data DIR --out models/movie_genres

DIR is the poster dataset as distributed: `train.csv` with `Id`, `Genre` (the
genres as list text, e.g. "['Comedy', 'Drama']") and one 0/1 column per genre
(read from the header: 25 in the original), and posters at `Images/<Id>.jpg`.

The 0/1 columns are the targets, as in the course. Rows whose Genre text and
0/1 columns disagree are reported with their line numbers (and trained on the
columns); malformed rows and missing or unreadable posters are reported and
skipped. The split is random 80/10/10. `--backbone scratch` is the course's
CNN from scratch; the transfer-learning backbones are the other choices.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training import inputs, multilabel, options, publishing
from training.datasets.movie_posters import read_posters
from training.datasets.report import report_problems
from training.inputs import Sample

TASK = "movie_genres"


# --- data ------------------------------------------------------------------------------


# --- recipe ----------------------------------------------------------------------------

def main(argv=None):
    parser = options.common_parser(__doc__.split("\n\n")[0], default_size=224, default_backbone="efficientnetb0")
    multilabel.add_arguments(parser)
    parser.set_defaults(max_labels=3)
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)

    # 1. Data.
    rows, genres, report = read_posters(args.data)
    images, kept_rows, skipped = inputs.load_images([Sample(path, i) for i, (_, path, _) in enumerate(rows)], size)
    line_of = {str(path): line for line, path, _ in rows}
    report["unreadable_images"] = [f"line {line_of[path]}: {path}: {reason}" for path, reason in skipped]
    print(f"{len(genres)} genres; {len(kept_rows)} posters used")
    report_problems(report)
    targets = multilabel.multi_hot([rows[i][2] for i in kept_rows], len(genres))
    data = multilabel.random_split(images, targets, args.seed)

    # 2. Model, 3. training and thresholds, 4. evaluation.
    model, base = multilabel.build_model(len(genres), args.image_size, args.backbone, args.weights, name="movie_genres")
    loss = multilabel.make_loss(args.loss, data["train"][1])
    thresholds, metrics = multilabel.train_and_evaluate(args, model, base, loss, data, genres)

    # 5. The bundle.
    used = [rows[i][1] for i in kept_rows]
    dataset = {"name": "Movie posters (multi-label genres)", "images": len(used), "split": f"random 80/10/10, seed {args.seed}",
               "sha256": inputs.fingerprint(used + [args.data / "train.csv"], args.data), "report": report}
    metadata = publishing.base_metadata(TASK, genres, args.image_size, metrics, dataset, demo=args.demo,
                                    backbone=args.backbone, loss=args.loss, max_labels=args.max_labels)
    metadata["thresholds"] = thresholds
    card = publishing.model_card(
        "Movie genres from a poster",
        f"Predicts which of {len(genres)} genres a movie belongs to from its poster. Backbone: {args.backbone}.",
        metadata, tags=["multi-label", "movie-posters"], datasets=["movie-posters"],
        metric_rows=multilabel.metric_rows(metrics),
        body="\n## Per-genre report\n\n" + multilabel.per_label_table(metrics, "genre") + "\n",
    )
    publishing.write_bundle(args.out, {"classifier": model}, metadata, card, multilabel.examples_from(used, data["test_index"]))
    if args.push_to_hub:
        publishing.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic posters where each genre is a visible motif."""
    from training.synthetic.motifs import make_movie_posters

    data = make_movie_posters(workdir / "posters", count=300)
    main(["--data", str(data), "--out", str(out), "--backbone", "small", "--weights", "none", "--image-size", "64",
          "--epochs", "25", "--patience", "8", "--fine-tune-epochs", "2", "--batch-size", "16", "--demo"])


if __name__ == "__main__":
    main(sys.argv[1:])
