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
from pathlib import Path

from training import inputs, multilabel, options, publishing
from training.datasets.harrison import keep_top_tags, read_harrison
from training.datasets.report import report_problems
from training.inputs import Sample

TASK = "hashtags"


# --- data ------------------------------------------------------------------------------


def summarise(report: dict) -> None:
    print(f"{report['lines']} lines; {report['kept']} images used")
    if report.get("length_mismatch"):
        print(f"  warning: {report['length_mismatch']}")
    if report["unknown_tag_count"]:
        print(f"  {report['unknown_tag_count']} uses of tags outside the vocabulary, e.g. {', '.join(list(report['unknown_tags'])[:5])}")
    report_problems(report)


# --- recipe ----------------------------------------------------------------------------

def main(argv=None):
    parser = options.common_parser(__doc__.split("\n\n")[0], default_size=224, default_backbone="mobilenetv2")
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
    images, kept_rows, skipped = inputs.load_images(samples, size)
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
               "sha256": inputs.fingerprint(used + [args.data / n for n in ("data_list.txt", "tag_list.txt", "vocab_index.txt")], args.data),
               "top_tags": args.top_tags, "report": report}
    metadata = publishing.base_metadata(TASK, tags, args.image_size, metrics, dataset, demo=args.demo,
                                    backbone=args.backbone, loss=args.loss, max_labels=args.max_labels)
    metadata["thresholds"] = thresholds
    card = publishing.model_card(
        "Hashtag suggestions (HARRISON)",
        f"Suggests hashtags for a photo among {len(tags)} tags. Backbone: {args.backbone}; loss: {args.loss}.",
        metadata, tags=["multi-label", "hashtags", "harrison"], datasets=["harrison"],
        metric_rows=multilabel.metric_rows(metrics),
        body=data_report_section(report) + "\n## Per-tag report\n\n" + multilabel.per_label_table(metrics, "tag") + "\n",
    )
    extra = multilabel.examples_from(used, data["test_index"])
    publishing.write_bundle(args.out, {"classifier": model}, metadata, card, extra)
    if args.push_to_hub:
        publishing.push_to_hub(args.out, args.push_to_hub, TASK)
    return metrics


def data_report_section(report: dict) -> str:
    return (f"\n## Data report\n\n{report['lines']} lines read, {report['kept']} images used; "
            f"{report['empty_tag_lines_count']} empty tag lines, {report['missing_images_count']} missing and "
            f"{report['unreadable_images_count']} unreadable images, {report['unknown_tag_count']} uses of tags "
            f"outside the vocabulary (on {report['unknown_tag_lines_count']} lines). Line numbers are in task.json.\n")


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic photos where each hashtag is a visible motif."""
    from training.synthetic.motifs import make_harrison

    data = make_harrison(workdir / "harrison", count=320, size=128)
    main(["--data", str(data), "--out", str(out), "--backbone", "small", "--weights", "none", "--image-size", "64",
          "--epochs", "25", "--patience", "8", "--fine-tune-epochs", "2", "--batch-size", "16", "--demo"])


if __name__ == "__main__":
    main(sys.argv[1:])
