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

import ast
import csv
import sys
from pathlib import Path

from training import common, multilabel
from training.common import Sample

TASK = "movie_genres"


# --- data ------------------------------------------------------------------------------

def parse_genre_text(text: str) -> list[str]:
    """"['Comedy', 'Drama']" -> ['Comedy', 'Drama']; ValueError for anything else."""
    value = ast.literal_eval(text.strip())
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("not a list of genre names")
    return [v.strip() for v in value]


def read_posters(data: Path):
    """Rows (line number, poster path, genre indices), the genres in column order, and a report."""
    table = data / "train.csv"
    if not table.is_file():
        raise SystemExit(f"{data} has no train.csv: expected the poster dataset as distributed")
    report = {"malformed_rows": [], "genre_mismatch": [], "missing_images": []}
    rows = []
    with open(table, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or "Id" not in header or "Genre" not in header:
            raise SystemExit(f"{table}: the header must name Id, Genre and one 0/1 column per genre; got {header}")
        id_col, genre_col = header.index("Id"), header.index("Genre")
        genre_cols = [i for i in range(len(header)) if i not in (id_col, genre_col)]
        genres = [header[i].strip() for i in genre_cols]
        if not genres:
            raise SystemExit(f"{table}: no genre columns in the header")
        for fields in reader:
            line = reader.line_num
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                report["malformed_rows"].append(f"line {line}: {len(fields)} fields, the header has {len(header)}")
                continue
            flags = [fields[i].strip() for i in genre_cols]
            if any(flag not in ("0", "1") for flag in flags):
                report["malformed_rows"].append(f"line {line}: genre columns must be 0 or 1")
                continue
            from_columns = [g for g, flag in zip(genres, flags) if flag == "1"]
            try:
                from_text = parse_genre_text(fields[genre_col])
            except (ValueError, SyntaxError):
                report["genre_mismatch"].append(f"line {line}: Genre text {fields[genre_col]!r} is not a list")
            else:
                if sorted(from_text) != sorted(from_columns):
                    report["genre_mismatch"].append(f"line {line}: Genre says {from_text}, the 0/1 columns say {from_columns}")
            poster = data / "Images" / f"{fields[id_col].strip()}.jpg"
            if not poster.is_file():
                report["missing_images"].append(f"line {line}: Images/{poster.name}")
                continue
            if not from_columns:
                report["malformed_rows"].append(f"line {line}: no genre set")
                continue
            rows.append((line, poster, [genres.index(g) for g in from_columns]))
    return rows, genres, report


# --- recipe ----------------------------------------------------------------------------

def main(argv=None):
    parser = common.common_parser(__doc__.split("\n\n")[0], default_size=224, default_backbone="efficientnetb0")
    multilabel.add_arguments(parser)
    parser.set_defaults(max_labels=3)
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)

    # 1. Data.
    rows, genres, report = read_posters(args.data)
    images, kept_rows, skipped = common.load_images([Sample(path, i) for i, (_, path, _) in enumerate(rows)], size)
    line_of = {str(path): line for line, path, _ in rows}
    report["unreadable_images"] = [f"line {line_of[path]}: {path}: {reason}" for path, reason in skipped]
    print(f"{len(genres)} genres; {len(kept_rows)} posters used")
    common.report_problems(report)
    targets = multilabel.multi_hot([rows[i][2] for i in kept_rows], len(genres))
    data = multilabel.random_split(images, targets, args.seed)

    # 2. Model, 3. training and thresholds, 4. evaluation.
    model, base = multilabel.build_model(len(genres), args.image_size, args.backbone, args.weights, name="movie_genres")
    loss = multilabel.make_loss(args.loss, data["train"][1])
    thresholds, metrics = multilabel.train_and_evaluate(args, model, base, loss, data, genres)

    # 5. The bundle.
    used = [rows[i][1] for i in kept_rows]
    dataset = {"name": "Movie posters (multi-label genres)", "images": len(used), "split": f"random 80/10/10, seed {args.seed}",
               "sha256": common.fingerprint(used + [args.data / "train.csv"], args.data), "report": report}
    metadata = common.base_metadata(TASK, genres, args.image_size, metrics, dataset, demo=args.demo,
                                    backbone=args.backbone, loss=args.loss, max_labels=args.max_labels)
    metadata["thresholds"] = thresholds
    card = common.model_card(
        "Movie genres from a poster",
        f"Predicts which of {len(genres)} genres a movie belongs to from its poster. Backbone: {args.backbone}.",
        metadata, tags=["multi-label", "movie-posters"], datasets=["movie-posters"],
        metric_rows=multilabel.metric_rows(metrics),
        body="\n## Per-genre report\n\n" + multilabel.per_label_table(metrics, "genre") + "\n",
    )
    common.write_bundle(args.out, {"classifier": model}, metadata, card, multilabel.examples_from(used, data["test_index"]))
    if args.push_to_hub:
        common.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic posters where each genre is a visible motif."""
    from training.synthetic import make_movie_posters

    data = make_movie_posters(workdir / "posters", count=300)
    main(["--data", str(data), "--out", str(out), "--backbone", "small", "--weights", "none", "--image-size", "64",
          "--epochs", "25", "--patience", "8", "--fine-tune-epochs", "2", "--batch-size", "16", "--demo"])


if __name__ == "__main__":
    main(sys.argv[1:])
