"""Hashtag suggestion on HARRISON, a multi-label benchmark of Instagram photos.

    python -m training.hashtags --data DIR --out models/hashtags [--top-tags N]

DIR is HARRISON as distributed: `data_list.txt` (one image path per line, e.g.
`instagram_dataset/sea/image_50.jpg`), `tag_list.txt` (that image's hashtags,
space-separated, same line order), `vocab_index.txt` (a tag and its index per
line, padded with spaces) and the images in per-class folders.

Known problems of the real files are handled, counted and reported with line
numbers, never fatal: corrupted images, missing images, empty tag lines, tags
outside the vocabulary (dropped from that image, and listed). The split is
random 80/10/10 (HARRISON has no official one). MobileNetV2 by default, as in
the course; input size from 96 px up.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from training import common, multilabel
from training.common import Sample

TASK = "hashtags"


# --- data ------------------------------------------------------------------------------

def read_vocabulary(file: Path) -> list[str]:
    """Tags in index order from `vocab_index.txt` ("love                  0")."""
    entries = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise SystemExit(f"{file.name} line {number}: expected 'tag index', got {line.strip()!r}")
        entries.append((int(fields[1]), fields[0]))
    return [tag for _, tag in sorted(entries)]


def read_harrison(data: Path):
    """Rows (line number, image path, tag indices), the vocabulary, and a report of every problem."""
    for name in ("data_list.txt", "tag_list.txt", "vocab_index.txt"):
        if not (data / name).is_file():
            raise SystemExit(f"{data} has no {name}: expected HARRISON as distributed")
    vocabulary = read_vocabulary(data / "vocab_index.txt")
    index = {tag: i for i, tag in enumerate(vocabulary)}
    paths = (data / "data_list.txt").read_text(encoding="utf-8").splitlines()
    tag_lines = (data / "tag_list.txt").read_text(encoding="utf-8").splitlines()
    report = {"lines": len(paths), "empty_tag_lines": [], "missing_images": [], "unknown_tags": {},
              "unknown_tag_lines": [], "unknown_tag_count": 0}
    if len(paths) != len(tag_lines):
        report["length_mismatch"] = f"data_list.txt has {len(paths)} lines, tag_list.txt {len(tag_lines)}"
    unknown = Counter()
    rows = []
    for number, (path, line) in enumerate(zip(paths, tag_lines), start=1):
        tags = line.split()
        if not path.strip():
            continue
        if not tags:
            report["empty_tag_lines"].append(number)
            continue
        outside = [tag for tag in tags if tag not in index]
        if outside:
            unknown.update(outside)
            report["unknown_tag_lines"].append(number)
        known = sorted({index[tag] for tag in tags if tag in index})
        if not known:
            continue  # counted under unknown tags
        if not (data / path.strip()).is_file():
            report["missing_images"].append(f"line {number}: {path.strip()}")
            continue
        rows.append((number, data / path.strip(), known))
    report["unknown_tag_count"] = sum(unknown.values())
    report["unknown_tags"] = dict(unknown.most_common(common.MAX_LISTED))
    return rows, vocabulary, report


def keep_top_tags(rows, vocabulary, top: int | None, report: dict):
    """Restrict to the `top` most frequent tags; rows left without a tag are counted and dropped."""
    if not top:
        return rows, vocabulary
    counts = Counter(i for _, _, tags in rows for i in tags)
    kept = [i for i, _ in counts.most_common(top)]
    new_index = {old: new for new, old in enumerate(kept)}
    remapped = [(n, p, sorted(new_index[i] for i in tags if i in new_index)) for n, p, tags in rows]
    report["rows_without_a_top_tag"] = sum(1 for _, _, tags in remapped if not tags)
    return [row for row in remapped if row[2]], [vocabulary[i] for i in kept]


def summarise(report: dict) -> None:
    print(f"{report['lines']} lines; {report['kept']} images used")
    if report.get("length_mismatch"):
        print(f"  warning: {report['length_mismatch']}")
    if report["unknown_tag_count"]:
        print(f"  {report['unknown_tag_count']} uses of tags outside the vocabulary, e.g. {', '.join(list(report['unknown_tags'])[:5])}")
    common.report_problems(report)


# --- recipe ----------------------------------------------------------------------------

def main(argv=None):
    parser = common.common_parser(__doc__.split("\n\n")[0], default_size=224, default_backbone="mobilenetv2")
    parser.add_argument("--top-tags", type=int, help="train on the N most frequent tags only")
    multilabel.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.backbone == "mobilenetv2" and args.image_size < 96:
        parser.error("--image-size must be at least 96 for MobileNetV2")
    import keras

    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)

    # 1. Data: read the label files, restrict the vocabulary, decode each image once.
    rows, tags, report = read_harrison(args.data)
    rows, tags = keep_top_tags(rows, tags, args.top_tags, report)
    samples = [Sample(path, row) for row, (_, path, _) in enumerate(rows)]
    images, kept_rows, skipped = common.load_images(samples, size)
    line_of = {str(path): number for number, path, _ in rows}
    report["unreadable_images"] = [f"line {line_of[path]}: {path}: {reason}" for path, reason in skipped]
    report["kept"] = len(kept_rows)
    summarise(report)
    targets = multilabel.multi_hot([rows[i][2] for i in kept_rows], len(tags))
    data = multilabel.random_split(images, targets, args.seed)

    # 2. Model, 3. training and thresholds, 4. evaluation on the test split.
    model, base = multilabel.build_model(len(tags), args.image_size, args.backbone, args.weights, name="hashtags")
    loss = multilabel.make_loss(args.loss, data["train"][1])
    thresholds, metrics = multilabel.train_and_evaluate(args, model, base, loss, data, tags)

    # 5. The bundle.
    used = [rows[i][1] for i in kept_rows]
    dataset = {"name": "HARRISON", "images": len(used), "split": f"random 80/10/10, seed {args.seed}",
               "sha256": common.fingerprint(used + [args.data / n for n in ("data_list.txt", "tag_list.txt", "vocab_index.txt")], args.data),
               "top_tags": args.top_tags, "report": report}
    metadata = common.base_metadata(TASK, tags, args.image_size, metrics, dataset, demo=args.demo,
                                    backbone=args.backbone, loss=args.loss, max_labels=args.max_labels)
    metadata["thresholds"] = thresholds
    card = common.model_card(
        "Hashtag suggestions (HARRISON)",
        f"Suggests hashtags for a photo among {len(tags)} tags. Backbone: {args.backbone}; loss: {args.loss}.",
        metadata, tags=["multi-label", "hashtags", "harrison"], datasets=["harrison"],
        metric_rows=multilabel.metric_rows(metrics),
        body=data_report_section(report) + "\n## Per-tag report\n\n" + multilabel.per_label_table(metrics, "tag") + "\n",
    )
    extra = multilabel.examples_from(used, data["test_index"])
    common.write_bundle(args.out, {"classifier": model}, metadata, card, extra)
    if args.push_to_hub:
        common.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def data_report_section(report: dict) -> str:
    return (f"\n## Data report\n\n{report['lines']} lines read, {report['kept']} images used; "
            f"{report['empty_tag_lines_count']} empty tag lines, {report['missing_images_count']} missing and "
            f"{report['unreadable_images_count']} unreadable images, {report['unknown_tag_count']} uses of tags "
            f"outside the vocabulary (on {report['unknown_tag_lines_count']} lines). Line numbers are in task.json.\n")


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic photos where each hashtag is a visible motif."""
    from training.synthetic import make_harrison

    data = make_harrison(workdir / "harrison", count=320, size=128)
    main(["--data", str(data), "--out", str(out), "--backbone", "small", "--weights", "none", "--image-size", "64",
          "--epochs", "25", "--patience", "8", "--fine-tune-epochs", "2", "--batch-size", "16", "--demo"])


if __name__ == "__main__":
    main(sys.argv[1:])
