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

from training import multilabel, options, publishing
from training.datasets.movie_posters import read_posters
from training.inputs import Sample

TASK = "movie_genres"
CARD = publishing.Card(
    title="Movie genres from a poster",
    summary="Predicts which of {labels} genres a movie belongs to from its poster. Backbone: {backbone}.",
    tags=["multi-label", "movie-posters"], datasets=["movie-posters"], label_name="genre")


def parser():
    cli = options.common_parser(__doc__.split("\n\n")[0], default_size=224, default_backbone="efficientnetb0")
    multilabel.add_arguments(cli)
    cli.set_defaults(max_labels=3)
    return cli


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)

    # 1. Data: the CSV as distributed; its 0/1 columns are the targets.
    rows, genres, report = read_posters(args.data)
    data = multilabel.Data("Movie posters (multi-label genres)", args.data, genres,
                           [Sample(path, tuple(labels)) for _, path, labels in rows], report,
                           lines={str(path): line for line, path, _ in rows}, extra_files=[args.data / "train.csv"])

    # 2.-5. Model, training, thresholds, evaluation and bundle: the multi-label recipe.
    return multilabel.train(TASK, data, CARD, args, options.command(__spec__.name, argv))


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic posters where each genre is a visible motif."""
    from training.synthetic.motifs import make_movie_posters

    data = make_movie_posters(workdir / "posters", count=240)
    main(["--data", str(data), "--out", str(out), "--backbone", "conv4-gap", "--weights", "none", "--image-size", "64",
          "--epochs", "9", "--patience", "9", "--fine-tune-epochs", "0", "--batch-size", "16", "--learning-rate",
          "0.003", "--with-examples", "--demo"])


if __name__ == "__main__":
    main()
