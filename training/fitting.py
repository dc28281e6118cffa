"""How a network is fitted: on which devices, at which precision, in which phases, and resumably.

- Devices: `distribution()` mirrors the model over every GPU of the machine
  (tf.distribute.MirroredStrategy), or over several machines when TF_CONFIG describes a cluster
  (MultiWorkerMirroredStrategy; training/cluster.py: joining, who writes, what the chief decides).
  The batch size a recipe is given is per device (per replica): the global batch is that times
  the number of replicas, and the learning rate is left as given.
- Repeatability: `--deterministic` turns on TensorFlow's op determinism (the same command, the
  same network on the same machine); otherwise the input pipeline's order and some kernels vary.
- Precision: `--mixed-precision` computes in float16 on GPUs (Keras' mixed_float16 policy,
  with loss scaling); output layers stay float32. Bundles are always saved in float32.
- Phases (keras-io's transfer-learning recipe): the head trains on a frozen pretrained backbone,
  then the top of the backbone is unfrozen (BatchNorm layers stay frozen) and training goes on at
  a tenth of the learning rate. A from-scratch network trains whole in both phases. The network
  leaves with the better phase's weights by validation loss.
- Resuming: a run keeps a work folder beside its bundle (`<out>.work/`). Each stage (one network's
  one phase) is one `model.fit` with BackupAndRestore, so re-running the same command after an
  interruption, even `kill -9`, continues from the last finished epoch of the stage it was in;
  finished stages are not run again. The best weights of a stage (ModelCheckpoint) are the ones
  it ends with, and its history (CSVLogger, TensorBoard) goes into the bundle's `logs/`.
  A demo build (`--demo`: synthetic data made afresh each time) is never resumed, and skips the
  per-epoch checkpoints and TensorBoard files: a sixth to a third of its time on a CPU (cProfile).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from core.atomic import atomic_file
from training import cluster
from training.backbones import leaf_layers

MONITOR = "val_loss"


# --- devices and precision -------------------------------------------------------------------

def distribution(cluster_timeout: float = cluster.TIMEOUT):
    """The tf.distribute strategy for this machine: several machines when TF_CONFIG describes a
    cluster (training/cluster.py; a worker that cannot reach the others within `cluster_timeout`
    seconds stops, naming them), several devices (every GPU; or, without a GPU, the logical CPUs a
    test has split the processor into), or the default one-device strategy."""
    import tensorflow as tf

    member = cluster.from_environment()
    if member is not None:
        strategy = cluster.join(member, cluster_timeout)
    else:
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices]) if len(devices) > 1 \
            else tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        where = f" on {len(member.members)} machines, this one {member.name}" if member and len(member.members) > 1 else ""
        print(f"Training on {strategy.num_replicas_in_sync} replicas ({type(strategy).__name__}){where}; "
              f"the batch size given is per replica")
    return strategy


def shard_of(strategy) -> tuple[int, int] | None:
    """(workers, this worker's rank) in a cluster of machines, each of which reads its own records;
    None on one machine."""
    team = cluster.team()
    if team is None or team.strategy is not strategy:
        return None
    return len(team.cluster.members), team.cluster.rank


def set_determinism(enabled: bool) -> None:
    """With `enabled`, the same command gives the same network on the same machine: TensorFlow's
    op determinism, which also makes tf.data keep its order. Costs speed (mostly on GPUs), so it
    is an option (--deterministic), for runs that must be compared or repeated."""
    if enabled:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def set_precision(mixed: bool) -> str:
    """Keras' global dtype policy for the networks built from now on."""
    import tensorflow as tf

    policy = "mixed_float16" if mixed else "float32"
    if mixed and not tf.config.list_physical_devices("GPU"):
        print("--mixed-precision: no GPU here; float16 on a CPU is slower than float32, but it runs")
    keras.mixed_precision.set_global_policy(policy)
    return policy


# --- fine-tuning -----------------------------------------------------------------------------

def unfreeze_top(base, fraction: float) -> int:
    """Unfreeze the top `fraction` of the backbone's layers, BatchNorm excepted (keras-io recipe).
    Layers are counted inside nested models (our wrappers hold a keras.applications network as one
    layer). Returns how many layers are trainable."""
    base.trainable = True
    for layer in base.layers:
        if getattr(layer, "layers", None):
            layer.trainable = True
    leaves = leaf_layers(base)
    cut = int(len(leaves) * (1.0 - fraction))
    count = 0
    for index, layer in enumerate(leaves):
        layer.trainable = index >= cut and layer.__class__.__name__ != "BatchNormalization"
        count += layer.trainable
    return count


def match_batchnorm(model, steps_per_epoch: int) -> float:
    """Give the model's BatchNorm layers a momentum whose moving averages look back over a quarter
    of an epoch at most (100 steps at most: Keras' default 0.99). Returns the momentum.

    The moving averages are what a network uses at inference, validation included. With Keras'
    0.99 and a dozen steps an epoch, a from-scratch network's averages are still mostly their
    initial values after several epochs: a deep backbone (Xception has 40 BatchNorm layers) then
    squashes every input to the same features, so validation scores stay flat (e.g. gender
    accuracy at the majority share, loss at ln 2) while training accuracy climbs. Pretrained
    backbones keep their BatchNorm frozen and are not concerned."""
    window = min(100.0, max(1.0, steps_per_epoch / 4))
    momentum = 1.0 - 1.0 / window
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    return momentum


def build_before_fit(model, batch_spec) -> None:
    """Make the state that Keras 3 would otherwise make inside the first trace of the training step
    (the optimizer's variables, the compiled metrics' and loss's), for batches of `batch_spec`.

    With one device (no tf.distribute strategy) Keras leaves that state to the first trace, and
    TensorFlow then traces the step a second time; under a strategy Keras makes it first,
    symbolically (Trainer._symbolic_build, Keras 3.15). This does the same for one device, so each
    phase traces its step once: a MobileNetV2 phase's first epoch 18.5 -> 9.5 s on a CPU core."""
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return
    symbolic_build = getattr(model, "_symbolic_build", None)  # private: a later Keras may rename it
    if symbolic_build is not None:
        symbolic_build(data_batch=batch_spec)
    elif model.optimizer is not None and not model.optimizer.built:  # then at least the optimizer
        model.optimizer.build(model.trainable_variables)


@dataclass(frozen=True)
class Schedule:
    """The two-phase schedule's numbers."""

    epochs: int
    fine_tune_epochs: int
    learning_rate: float
    patience: int
    fine_tune_fraction: float = 0.2
    first_phase_fraction: float = 0.0  # of a pretrained backbone, trained with the head in phase 1


def fit_two_phases(run: "Run", name: str, model, base, train, val, compile_model, schedule: Schedule,
                   pretrained: bool, steps_per_epoch: int) -> None:
    """Phase 1: the head on a frozen pretrained base (with its top `first_phase_fraction`, as the
    age & gender course does), or the whole from-scratch network. Phase 2: the top
    `fine_tune_fraction` of a pretrained base unfrozen, at a tenth of the learning rate."""
    if not pretrained:
        match_batchnorm(model, steps_per_epoch)
    if pretrained and schedule.first_phase_fraction > 0:
        trainable = unfreeze_top(base, schedule.first_phase_fraction)
        print(f"{name}, phase 1: the head and the top {trainable} backbone layers train")
    compile_model(model, schedule.learning_rate)
    run.fit(model, train, val, f"{name}-1", schedule.epochs, schedule.patience)
    if schedule.fine_tune_epochs <= 0:
        return
    rate = schedule.learning_rate / 10
    if pretrained:
        print(f"{name}, phase 2: {unfreeze_top(base, schedule.fine_tune_fraction)} backbone layers unfrozen, "
              f"learning rate {rate:g}")
    else:
        print(f"{name}, phase 2: the from-scratch network goes on at learning rate {rate:g}")
    compile_model(model, rate)
    run.fit(model, train, val, f"{name}-2", schedule.fine_tune_epochs, schedule.patience)
    # Each phase ends on its own best epoch; fine-tuning can still end worse than the head alone
    # (too few examples for the unfrozen layers): the network leaves with the better of the two.
    first, second = run.best(f"{name}-1"), run.best(f"{name}-2")
    if first < second:
        print(f"{name}: phase 2's best {MONITOR} ({second:.4g}) is worse than phase 1's ({first:.4g}); "
              f"the network keeps phase 1's weights")
        model.load_weights(run.final_weights(f"{name}-1"))  # every worker's, the chief's weights


# --- resumable runs -------------------------------------------------------------------------

class Run:
    """The work folder of one training run, beside its bundle: `<out>.work/` (or `work`, e.g. one
    backbone's folder in a comparison).

    `settings` (the options that shape the result) are stored in it; a work folder left by a run
    with other settings is not resumed: the command says so and how to start over.

    `resumable=False` (demo builds) keeps each stage's best weights in memory instead of writing
    checkpoints, and its history as a CSV only.

    In a cluster (training/cluster.py) the work folder is the chief's: another worker keeps its
    checkpoints in a scratch folder of its own, emptied when it starts and deleted at the end, and
    takes every decision a resumed run makes from the chief (finished stages, the epoch to go on
    after, the history so far, the weights)."""

    def __init__(self, out: Path, settings: dict, restart: bool = False, work: Path | None = None,
                 resumable: bool = True):
        self.work = Path(work) if work is not None else work_folder(out)
        self.resumable = resumable
        self.writes = cluster.writes()
        settings = json.loads(json.dumps(settings, default=str))
        self.settings = settings
        if not self.writes:
            scratch = cluster.scratch(out)
            self.scratch = scratch
            self.work = scratch / self.work.relative_to(work_folder(out)) if self.work.is_relative_to(
                work_folder(out)) else scratch / self.work.name
            shutil.rmtree(self.work, ignore_errors=True)  # never resumed from: the chief's folder is
        record = self.work / "run.json"
        if restart and self.work.exists():
            shutil.rmtree(self.work)
        if record.is_file():
            previous = json.loads(record.read_text())
            # A setting missing from one side is None there: an option added since the run began,
            # left unset, changes nothing.
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            if changed:
                raise SystemExit(
                    f"{self.work} holds an interrupted run with other settings ({', '.join(changed)}). "
                    f"Run the same command again to resume it, or add --restart to start over.")
            print(f"Resuming the interrupted run in {self.work}")
        self._agreed = False

    def _start(self) -> None:
        """The work folder and its record of the settings, made at the first stage: a run that
        stops before (a cluster that did not form) leaves nothing to resume or to refuse."""
        record = self.work / "run.json"
        if not record.is_file():
            self.work.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(self.settings, indent=1, sort_keys=True) + "\n")

    def fit(self, model, train, val, stage: str, epochs: int, patience: int, monitor: str = MONITOR) -> None:
        """One resumable `model.fit` of at most `epochs` epochs with early stopping; the model ends
        with the stage's best weights."""
        folder = self.work / stage
        final = self.final_weights(stage)
        team = self._team()
        self._start()
        if self._chief(final.is_file()):
            if final.is_file():  # the chief's; another worker is given its weights below
                model.load_weights(final)
            print(f"{stage}: finished in an earlier run; its weights are reloaded")
            self._keep_final(model, stage)
            return
        folder.mkdir(parents=True, exist_ok=True)
        history = folder / "history.csv"
        done = _finished_epochs(folder / "backup")
        rows = _history_rows(history, done)
        done, values = self._chief((done, _logged(rows, monitor)))
        if done:
            print(f"{stage}: resuming after epoch {done} of {epochs}")
        best_file = folder / "best.weights.h5"
        # EpochSeconds before the logger, which then writes the epoch's time with its metrics.
        callbacks = [EpochSeconds(), keras.callbacks.CSVLogger(history, append=True)]
        if self.resumable:
            callbacks = [
                keras.callbacks.ModelCheckpoint(best_file, monitor=monitor, save_best_only=True,
                                                save_weights_only=True,
                                                initial_value_threshold=min(values) if values else None),
                *callbacks,
                keras.callbacks.TensorBoard(folder / "tensorboard", write_graph=False),
                ResumableEarlyStopping(values, monitor=monitor, patience=patience),
                # Last, so that an epoch counts as done only once everything above has been written.
                keras.callbacks.BackupAndRestore(folder / "backup", double_checkpoint=True),
            ]
        else:
            callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=patience, restore_best_weights=True))
        steps = {}
        if team is not None:
            callbacks.append(InStep(team))  # after BackupAndRestore, which restores the chief
            cluster.fit_in_cluster(model, train.element_spec)
            (train, steps["steps_per_epoch"]), (val, steps["validation_steps"]) = map(team.distributed, (train, val))
        if team is None:
            build_before_fit(model, train.element_spec)
        model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=2, **steps)
        # BackupAndRestore tells fit where to resume through model._initial_epoch and never clears
        # it: the model's next fit (the next phase) would start at that epoch and skip as many
        # (Keras 3.15; see docs/decisions.md). Clear it at our edge.
        model._initial_epoch = None
        if best_file.is_file():
            model.load_weights(best_file)
        self._keep_final(model, stage)

    def _keep_final(self, model, stage: str) -> None:
        """The stage's weights, the chief's on every worker, saved as the stage's final weights."""
        team = self._team()
        if team is not None:
            team.share(model.variables)
        # Keras saves weights only to a name ending in .weights.h5
        with atomic_file(self.final_weights(stage), self.work / stage / "final.part.weights.h5") as partial:
            model.save_weights(partial)

    def _team(self):
        """The cluster's team, once it has checked that every worker runs with the chief's settings."""
        team = cluster.team()
        if team is not None and not self._agreed:
            chief = team.from_chief(self.settings)
            differs = sorted(k for k in set(chief) | set(self.settings) if chief.get(k) != self.settings.get(k))
            if team.any(bool(differs)):
                raise cluster.ClusterError(
                    f"{team.cluster.name} was started with other options than the chief "
                    f"({', '.join(f'{k}: {self.settings.get(k)!r} here, {chief.get(k)!r} on the chief' for k in differs)})"
                    if differs else f"{team.cluster.name}: another worker was started with other options than the "
                    f"chief. Run the same command on every machine.")
            self._agreed = True
        return team

    def _chief(self, value):
        """`value` as the chief's work folder gives it, on every worker of a cluster."""
        team = self._team()
        return value if team is None else team.from_chief(value)

    def recorded(self, name: str):
        """The JSON record `name` the chief's work folder holds (e.g. a finished backbone's
        comparison row), on every worker; None when there is none."""
        file = self.work / name
        return self._chief(json.loads(file.read_text()) if file.is_file() else None)

    def final_weights(self, stage: str) -> Path:
        """The weights a finished stage ended with (its best epoch's)."""
        return self.work / stage / "final.weights.h5"

    def best(self, stage: str, monitor: str = MONITOR) -> float:
        """The stage's best (lowest) logged value of `monitor`, resumed epochs included; inf when none."""
        history = self.work / stage / "history.csv"
        value = float("inf")
        if history.is_file():
            with history.open(newline="") as handle:
                value = min(_logged(csv.DictReader(handle), monitor), default=float("inf"))
        return self._chief(value)

    def fit_seconds(self) -> float:
        """The wall time of every finished epoch of every stage, summed: the time to fit, also
        across interruptions (an epoch lost to one counts once, as it ran to completion)."""
        total = 0.0
        for history in self.work.glob("*/history.csv"):
            with history.open(newline="") as handle:
                total += sum(float(row.get("epoch_seconds") or 0) for row in csv.DictReader(handle))
        return total

    def logs(self) -> dict[str, bytes]:
        """The history of every stage, for the bundle's logs/: one CSV each and TensorBoard event
        files (the Hub shows these as "Training metrics")."""
        files = {}
        for folder in sorted(p for p in self.work.iterdir() if p.is_dir()) if self.work.is_dir() else ():
            if (folder / "history.csv").is_file():
                files[f"logs/{folder.name}.csv"] = (folder / "history.csv").read_bytes()
            for event in sorted((folder / "tensorboard").rglob("*tfevents*")):
                files[f"logs/{folder.name}/{event.relative_to(folder / 'tensorboard').as_posix()}"] = event.read_bytes()
        return files

    def finish(self) -> None:
        """The bundle is written: the work folder (another worker's scratch folder) has served its purpose."""
        shutil.rmtree(self.work, ignore_errors=True)
        if not self.writes:
            shutil.rmtree(self.scratch, ignore_errors=True)


def work_folder(out: Path) -> Path:
    """Where a run of the bundle `out` keeps its work: beside it, `<out>.work/`."""
    return Path(out).with_name(Path(out).name + ".work")


def remove_work_folder(out: Path) -> None:
    """The bundle `out` is written: its work folder goes (the chief's; another worker's scratch folder)."""
    shutil.rmtree(work_folder(out) if cluster.writes() else cluster.scratch(out), ignore_errors=True)


class EpochSeconds(keras.callbacks.Callback):
    """Adds each epoch's wall time to its logs (`epoch_seconds`), for the history and the time to fit."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.monotonic() - self.start


def _finished_epochs(backup: Path) -> int:
    try:
        return int(json.loads((backup / "training_metadata.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def _logged(rows, monitor: str) -> list[float]:
    """The values of `monitor` in a stage's history rows, epochs without one (or NaN) left out."""
    return [float(row[monitor]) for row in rows if row.get(monitor) not in (None, "", "nan")]


def _history_rows(history: Path, done: int) -> list[dict]:
    """The stage's logged epochs, keeping only those the backup holds: an epoch logged just before
    an interruption but not backed up runs again, and must not appear twice."""
    if not history.is_file():
        return []
    with history.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("epoch", "").isdigit() and int(row["epoch"]) < done]
    if rows:
        fields = list(rows[0])
        with history.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        history.unlink()
    return rows


class InStep(keras.callbacks.Callback):
    """Keeps the workers of a cluster in step where Keras does not:

    - at the start, once BackupAndRestore has restored the chief: every worker goes on after the
      chief's epoch, with the chief's weights and optimizer state;
    - before each validation: BatchNorm's moving statistics, which Keras 3 updates on each worker
      from its own batches (they are not aggregated like the weights), become their mean over the
      workers, so that every worker validates, and the chief saves, the same network. (Keras 2
      averaged them on every read.)"""

    def __init__(self, team):
        super().__init__()
        self.team = team

    def on_train_begin(self, logs=None):
        self.model._initial_epoch = self.team.from_chief(self.model._initial_epoch or 0) or None
        optimizer = self.model.optimizer
        self.team.share([*self.model.variables, *(optimizer.variables if optimizer is not None and optimizer.built
                                                  else [])])

    def on_test_begin(self, logs=None):
        self.team.average(variable for layer in leaf_layers(self.model)
                          if isinstance(layer, keras.layers.BatchNormalization)
                          for variable in (layer.moving_mean, layer.moving_variance))


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that, when a stage resumes, starts from the stage's logged history (best value
    so far, epochs since) instead of from nothing. Best weights come back from the stage's
    checkpoint, not from memory, so they survive an interruption too."""

    def __init__(self, history: list[float], **kwargs):
        super().__init__(restore_best_weights=False, **kwargs)
        self.history = history

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.history:
            best = min(range(len(self.history)), key=self.history.__getitem__)
            self.best, self.wait = self.history[best], len(self.history) - 1 - best
