"""The skeleton every recipe follows, and the steps of it that are the same in all of them.

A recipe (training/<task>.py) reads top to bottom:

- options: `parser()` (training/options.py: `common_parser` plus the task's own options);
- `start(args, recorded)` (here): the seed, the resumable run in `<out>.work/`, determinism,
  precision, and the devices (one machine's GPUs or a cluster, training/cluster.py) with the global
  batch;
- data: the task's reader (training/datasets/), every file read once (`inputs.scan`), a split,
  then streamed (`inputs.batches`);
- networks (training/backbones.py, or the task's own) fitted in resumable stages
  (training/fitting.py: `fit_two_phases`, `Run`);
- evaluation on the held-out split, each figure beside its baseline (training/evaluation.py);
- the bundle, its card and the Hub push: `publishing.release`.

The single-label tasks (dog breed, sandwich) share everything after the options in training/classification.py and
the multi-label ones (hashtags, movie genres) in training/multilabel.py, so that each of those
recipes is one short file of its reader and its defaults; age & gender (two networks) and caries
(a segmenter) fill the steps themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from training import fitting, options


@dataclass
class Setup:
    """What `start` gives the rest of a recipe."""

    run: fitting.Run | None  # None when each compared backbone keeps a run of its own
    strategy: object  # the tf.distribute strategy: build and fit networks inside strategy.scope()
    replicas: int
    batch: int  # the global batch: --batch-size per replica x replicas


def start(args, recorded: dict | None = None, one_run: bool = True) -> Setup:
    """The common start of a run, for the options `args` of `options.common_parser`. `recorded`: settings the options do
    not show but a resumed run must share (the flags' content hash). With `one_run=False` the caller
    makes a run per compared backbone."""
    import keras

    keras.utils.set_random_seed(args.seed)
    run = fitting.Run(args.out, options.settings(args, **(recorded or {})), args.restart,
                      resumable=not args.demo) if one_run else None
    fitting.set_determinism(args.deterministic)
    fitting.set_precision(args.mixed_precision)
    strategy = fitting.distribution(args.cluster_timeout)
    replicas = strategy.num_replicas_in_sync
    return Setup(run, strategy, replicas, args.batch_size * replicas)
