"""Carve an image-classification dataset out of Open Images' boxable classes.

    python -m training.open_images --classes "Hamburger" "Sandwich" --meta DIR --out DIR

--meta holds the metadata as distributed: class-descriptions-boxable.csv (no header),
*-annotations-bbox.csv and *-images-*with-rotation.csv (train-images-boxable-with-rotation.csv,
validation-images-with-rotation.csv, ...). They run over a gigabyte, so they are streamed
row by row and hashed on the way. The images holding boxes of the classes are downloaded
(from the CVDF's mirror where it serves the subset, else from Flickr's OriginalURL; --source)
into <out>/images/<ImageID>.jpg and every box is cropped into
<out>/images_cropped/<class folder>/<ImageID>_<k>.jpg, a folder per class as image
classification loaders expect; <out>/manifest.json says what went in, what came out, and
what was skipped and why.

Boxes are in the frame of the stored pixels, and Rotation is "the degrees (counterclockwise)
that the image and boxes should be rotated": so the image is decoded without EXIF
orientation, the box cropped, and the crop rotated. Runs resume: a downloaded image is
never fetched again, and failures for good (404, placeholder, MD5 mismatch, not an image)
are remembered in <out>/download_failures.json (--retry-failed tries them again).

Downloads share one pooled HTTP client (kept-alive connections; a 429 or 503 is retried after
its Retry-After). A source that does not answer stops the build early with an error naming it
(a circuit breaker: the first 20 downloads from it all unreachable, or 80 % of its last 50
failing); rerun when it is back, the finished images are kept. A build that ends with no crop
is an error too: the command never exits 0 with an empty dataset.

Classes form a hierarchy (bbox_labels_600_hierarchy.json, when it is in --meta): Hamburger and
Submarine sandwich are kinds of Sandwich, which is a kind of Food. Class names match exactly
unless --include-subclasses gathers each class's subclasses into its folder; --list-classes
prints the tree with box counts.

--push-to-hub REPO publishes the build as a Hub dataset repo (the imagefolder layout, a
metadata.jsonl with each crop's source and licence, the manifest and a dataset card) and prints
the commit, which a recipe pins: --data hf://datasets/REPO@COMMIT.

The package's modules are the build's steps, in order: csv_files (the metadata CSVs, streamed and
hashed), classes (names to labels and folders), hierarchy (subclasses, --list-classes),
selection (the boxes and images the options keep), origins (which URL serves an image),
downloading (resume, checks) over http_client (the pooled client, retries, rate limit) and
breaker, cropping, manifest (what went in, what came out, what was skipped), hub_push
(--push-to-hub) and cli (the options); core.atomic writes every file whole or not at all.
"""

from training.open_images.cli import main

__all__ = ["main"]
