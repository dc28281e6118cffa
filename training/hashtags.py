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

from training import multilabel, options, publishing
from training.datasets.harrison import keep_top_tags, read_harrison
from training.inputs import Sample

TASK = "hashtags"
LABEL_FILES = ("data_list.txt", "tag_list.txt", "vocab_index.txt")


def data_report_section(report: dict) -> str:
    return (f"\n## Data report\n\n{report['lines']} lines read, {report['kept']} images used; "
            f"{report['empty_tag_lines_count']} empty tag lines, {report['missing_images_count']} missing and "
            f"{report['unreadable_images_count']} unreadable images, {report['unknown_tag_count']} uses of tags "
            f"outside the vocabulary (on {report['unknown_tag_lines_count']} lines). Line numbers are in task.json.\n")


CARD = publishing.Card(
    title="Hashtag suggestions (HARRISON)",
    summary="Suggests hashtags for a photo among {labels} tags. Backbone: {backbone}; loss: {loss}.",
    tags=["multi-label", "hashtags", "harrison"], datasets=["harrison"], label_name="tag",
    report_section=data_report_section)


def parser():
    cli = options.common_parser(__doc__.split("\n\n")[0], default_size=224, default_backbone="mobilenetv2")
    cli.add_argument("--top-tags", type=int, help="train on the N most frequent tags only")
    multilabel.add_arguments(cli)
    return cli


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    cli = parser()
    args = cli.parse_args(argv)
    if args.backbone == "mobilenetv2" and args.image_size < 96:
        cli.error("--image-size must be at least 96 for MobileNetV2")

    # 1. Data: the label files as published, the vocabulary restricted to the top tags if asked.
    rows, tags, report = read_harrison(args.data)
    rows, tags = keep_top_tags(rows, tags, args.top_tags, report)
    print(f"{report['lines']} lines, {len(rows)} images with tags")
    if report.get("length_mismatch"):
        print(f"  warning: {report['length_mismatch']}")
    if report["unknown_tag_count"]:
        print(f"  {report['unknown_tag_count']} uses of tags outside the vocabulary, "
              f"e.g. {', '.join(list(report['unknown_tags'])[:5])}")
    data = multilabel.Data("HARRISON", args.data, tags, [Sample(path, tuple(labels)) for _, path, labels in rows],
                           report, lines={str(path): number for number, path, _ in rows},
                           extra_files=[args.data / name for name in LABEL_FILES], details={"top_tags": args.top_tags})

    # 2.-5. Model, training, thresholds, evaluation and bundle: the multi-label recipe.
    return multilabel.train(TASK, data, CARD, args, options.command(__spec__.name, argv))


def build_demo(out: Path, workdir: Path):
    """The demo bundle: this recipe on synthetic photos where each hashtag is a visible motif."""
    from training.synthetic.motifs import make_harrison

    data = make_harrison(workdir / "harrison", count=240, size=96)
    main(["--data", str(data), "--out", str(out), "--backbone", "conv4-gap", "--weights", "none", "--image-size", "64",
          "--epochs", "9", "--patience", "9", "--fine-tune-epochs", "0", "--batch-size", "16", "--learning-rate",
          "0.003", "--with-examples", "--demo"])


if __name__ == "__main__":
    main()
