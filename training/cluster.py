"""Training on several machines: the cluster TF_CONFIG names, who writes, and what the chief tells
the others.

With TF_CONFIG naming two or more workers, every machine runs the same command and
tf.distribute.MultiWorkerMirroredStrategy keeps one network in sync over all of them: each step,
every worker trains on its own share of the global batch and the gradients are summed across
machines (collective all-reduce over gRPC; NCCL between the GPUs of a machine).

- Joining: before TensorFlow joins the cluster, `wait_for_peers` checks that every other member's
  address answers, for at most --cluster-timeout seconds, and a worker that cannot reach one stops
  with a message naming it. TensorFlow itself would wait forever there, inside a call that holds
  the interpreter (neither a Python timer nor a signal handler gets to run).
- Writing: the chief (the "chief" task, or worker 0 when there is none: TensorFlow's rule) alone
  writes what outlives the run: the work folder beside the bundle, the bundle, its card, its logs,
  the Hub push. The other workers write their checkpoints to a scratch folder of their own, which
  is deleted when the run ends (as in Keras' multi-worker guide: every worker runs the same
  callbacks, so that each runs the same collective operations, and only the chief's files count).
- Deciding: on a resumed run only the chief's work folder knows which stages are finished and
  after which epoch to go on, so the chief's answers and weights are broadcast to every worker
  (`Team.from_chief`, `Team.share`: an all-reduce to which only the chief contributes), and all of
  them take the same steps. The work folder therefore lives on the chief's disk alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 300.0  # seconds a worker waits for the others before giving up (--cluster-timeout)
JOBS = ("chief", "worker")  # the tasks that train; a "ps" or "evaluator" task is another strategy's


class ClusterError(SystemExit):
    """TF_CONFIG that cannot describe a training cluster, or a cluster that did not form: the
    message says which and how to fix it."""


@dataclass(frozen=True)
class Cluster:
    """The training cluster TF_CONFIG describes, from the point of view of one of its tasks."""

    jobs: dict  # "chief" / "worker" -> their addresses, "host:port"
    task_type: str
    task_index: int

    @property
    def members(self) -> list[tuple[str, str]]:
        """(name, address) of every task that trains, chief first: TensorFlow's order of ranks."""
        return [(f"{job} {index}", address) for job in JOBS for index, address in enumerate(self.jobs.get(job, []))]

    @property
    def rank(self) -> int:
        """This task's place among the members: 0 is the chief."""
        return (self.task_index if self.task_type == "chief" else self.task_index + len(self.jobs.get("chief", [])))

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def name(self) -> str:
        return self.members[self.rank][0]

    @property
    def address(self) -> str:
        return self.members[self.rank][1]

    def peers(self) -> list[tuple[str, str]]:
        return [member for rank, member in enumerate(self.members) if rank != self.rank]


def from_environment(environ=None) -> Cluster | None:
    """The cluster TF_CONFIG describes, or None without TF_CONFIG. ClusterError names what is wrong
    with a TF_CONFIG that cannot describe a training cluster."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ClusterError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ClusterError('TF_CONFIG needs a "cluster" (job -> addresses) and a "task" ({"type": ..., "index": ...})')
    jobs = {job: cluster[job] for job in JOBS if job in cluster}
    if not jobs.get("worker") and not jobs.get("chief"):
        raise ClusterError(f'TF_CONFIG\'s cluster names no "worker" (jobs: {", ".join(cluster) or "none"})')
    if len(jobs.get("chief", [])) > 1:
        raise ClusterError(f"TF_CONFIG names {len(jobs['chief'])} chiefs; a cluster has at most one")
    for job, addresses in jobs.items():
        if not isinstance(addresses, list) or not all(_is_address(a) for a in addresses):
            raise ClusterError(f'TF_CONFIG\'s "{job}" must be a list of "host:port" addresses, not {addresses!r}')
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in JOBS:
        raise ClusterError(f"TF_CONFIG's task is {task_type!r}: training runs in 'chief' and 'worker' tasks")
    if not isinstance(task_index, int) or not 0 <= task_index < len(jobs.get(task_type, [])):
        raise ClusterError(f"TF_CONFIG's task is {task_type} {task_index!r}, but the cluster has "
                           f"{len(jobs.get(task_type, []))} {task_type} address(es)")
    return Cluster(jobs, task_type, task_index)


def _is_address(address) -> bool:
    host, _, port = str(address).rpartition(":")
    return bool(host) and port.isdigit()


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# --- joining ------------------------------------------------------------------------------------

def wait_for_peers(cluster: Cluster, timeout: float) -> None:
    """Return once every other member's address accepts a connection, answering theirs on this
    member's own port meanwhile (TensorFlow's server takes that port over afterwards). ClusterError
    naming the members that never answered once `timeout` seconds have passed."""
    listener = _listen(cluster)
    stop = threading.Event()
    thread = threading.Thread(target=_answer, args=(listener, stop), daemon=True)
    thread.start()
    waiting = dict(cluster.peers())
    reasons = {}
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            for name, address in list(waiting.items()):
                try:
                    with socket.create_connection(_split(address), timeout=min(2.0, max(0.1, timeout))) as probe:
                        probe.shutdown(socket.SHUT_WR)  # this side closes first: its port, not the peer's, waits
                    del waiting[name]
                except OSError as error:
                    reasons[name] = error.strerror or type(error).__name__
            if not waiting:
                break
            if time.monotonic() >= deadline:
                missing = "; ".join(f"{name} at {address} ({reasons.get(name, 'no answer')})"
                                    for name, address in waiting.items())
                raise ClusterError(
                    f"{cluster.name} ({cluster.address}) could not reach {missing} within {timeout:g} s "
                    f"(--cluster-timeout). Start the same command on every machine TF_CONFIG names, and check "
                    f"that the address is right and its port open to this machine.")
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
        listener.close()


def _listen(cluster: Cluster) -> socket.socket:
    host, port = _split(cluster.address)
    try:
        return socket.create_server((host, port))
    except OSError as error:
        if error.errno == 98:  # EADDRINUSE: TensorFlow could not take it either
            raise ClusterError(f"{cluster.name}'s port {port} ({cluster.address} in TF_CONFIG) is already in use "
                               f"on this machine: is another run on it?") from None
        # The address may be one this machine is reached by without owning it (NAT): TensorFlow
        # listens on every interface anyway.
        return socket.create_server(("", port))


def _answer(listener: socket.socket, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except OSError:  # the timeout, to look at `stop`
            continue
        with connection:
            connection.settimeout(2.0)
            try:
                connection.recv(1)  # until the prober closes, so that it closes first
            except OSError:
                pass


# --- the team: one strategy, one chief ---------------------------------------------------------

class Team:
    """The workers of a running MultiWorkerMirroredStrategy, and what the chief tells them. Every
    method is a collective operation: all workers must call it, in the same order."""

    def __init__(self, strategy, cluster: Cluster):
        self.strategy, self.cluster = strategy, cluster
        self._reducers = {}

    def from_chief(self, value):
        """The chief's `value` (anything JSON can hold), on every worker."""
        import numpy as np

        data = np.frombuffer(json.dumps(value).encode(), np.uint8) if self.cluster.is_chief else np.zeros(0, np.uint8)
        (length,) = self._sum([np.array([len(data)], np.float64)], chief_only=True)
        padded = np.zeros(int(length[0]), np.float64)
        padded[:len(data)] = data
        (received,) = self._sum([padded], chief_only=True)
        return json.loads(received.astype(np.uint8).tobytes().decode())

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any worker."""
        import numpy as np

        (total,) = self._sum([np.array([float(flag)])], chief_only=False)
        return bool(total[0] > 0)

    def share(self, variables) -> None:
        """Give every worker's `variables` (Keras variables, in the same order everywhere) the chief's values."""
        self._assign(variables, chief_only=True)

    def average(self, variables) -> None:
        """Give every worker's `variables` their mean over the workers."""
        self._assign(variables, chief_only=False, scale=1 / len(self.cluster.members))

    def _assign(self, variables, chief_only: bool, scale: float = 1.0) -> None:
        import tensorflow as tf

        variables = list(variables)
        if not variables:
            return
        values = self._sum([v.value for v in variables], chief_only=chief_only, numpy=False)
        with self.strategy.scope():
            for variable, value in zip(variables, values):
                variable.assign(tf.cast(value * scale, variable.dtype))

    def distributed(self, dataset):
        """(`dataset` as this worker's replicas take it, steps in one pass over it): `dataset` holds
        this worker's batches of the global batch size (`inputs.batches` with a shard); each is cut
        into per-replica parts, and every part is used.

        Given the dataset itself, Keras counts an epoch's steps from its batches of the global size
        while each worker takes only its part of one per step: an epoch would stop at 1/workers of
        the worker's records. So the steps are counted here (each global batch makes `workers`
        steps, whatever the replicas per worker), and the dataset repeats, one pass per epoch."""
        import tensorflow as tf

        size = tf.nest.flatten(dataset.element_spec)[0].shape[0]
        part = size // self.strategy.num_replicas_in_sync
        batches = int(dataset.cardinality())
        if batches < 0:  # unknown: Keras goes on until the data runs out, on every worker at once
            return self.strategy.distribute_datasets_from_function(
                lambda context: dataset.rebatch(part, drop_remainder=True)), None
        return self.strategy.distribute_datasets_from_function(
            lambda context: dataset.rebatch(part, drop_remainder=True).repeat()), batches * len(self.cluster.members)

    def _sum(self, arrays, chief_only: bool, numpy: bool = True) -> list:
        """The sum over the workers of each array, as one all-reduce of one vector: each worker's
        first replica contributes (`chief_only`: the chief's alone, which gives every worker the
        chief's arrays). Carried as float64, which holds every float32 and every integer a weight
        file does (step counts, seed states) exactly."""
        import tensorflow as tf

        if chief_only not in self._reducers:
            local = len(self.strategy.extended.worker_devices)

            def contribute(vector):
                replica = tf.distribute.get_replica_context().replica_id_in_sync_group
                keep = tf.equal(replica, 0) if chief_only else tf.equal(replica % local, 0)
                return tf.distribute.get_replica_context().all_reduce(
                    "SUM", tf.where(keep, vector, tf.zeros_like(vector)))

            self._reducers[chief_only] = tf.function(
                lambda vector: self.strategy.run(contribute, args=(vector,)),
                input_signature=[tf.TensorSpec([None], tf.float64)])
        tensors = [tf.cast(tf.convert_to_tensor(a), tf.float64) for a in arrays]
        total = self._reducers[chief_only](tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0))
        total = self.strategy.experimental_local_results(total)[0]
        parts = [tf.reshape(part, t.shape) for part, t in
                 zip(tf.split(total, [int(tf.size(t)) for t in tensors]), tensors)]
        return [part.numpy() for part in parts] if numpy else parts


_team: Team | None = None


def join(cluster: Cluster, timeout: float):
    """Wait for the other members (`wait_for_peers`), then join them in a
    MultiWorkerMirroredStrategy, which this process keeps for its lifetime (TensorFlow allows one)."""
    global _team
    import tensorflow as tf

    if _team is not None:
        return _team.strategy
    if len(cluster.members) > 1:
        print(f"{cluster.name} of {len(cluster.members)} ({cluster.address}): waiting up to {timeout:g} s for "
              f"{', '.join(f'{name} at {address}' for name, address in cluster.peers())}", flush=True)
        wait_for_peers(cluster, timeout)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _prepare_keras_saving()
    _exit_on_error()
    _team = Team(strategy, cluster)
    return strategy


def _exit_on_error() -> None:
    """After an uncaught exception, a worker of a cluster prints it and exits at once, without
    finalising TensorFlow's objects: that can wait forever for a collective operation that a peer
    gone will never join (seen: worker 0 hung in the interpreter's last garbage collection after
    both workers had failed the same step)."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    sys.excepthook = hook


def _prepare_keras_saving() -> None:
    """To save or load weights, Keras lists the attributes to skip on each kind of object by making a
    reference object of that kind: for an optimizer, one with variables. It means to keep the list,
    but stores it under another name than it looks it up by (keras.src.saving.saving_lib.
    get_attr_skipset, "saving_attr_skipset_" vs "saving_attr_skiplist_", Keras 3.15), so it makes the
    reference optimizer on every save and load. Under a multi-worker strategy, making a variable is a
    collective operation: a load that only the chief makes (resuming) then stalls the cluster
    ("Collective instance ... expected type ..."). The lists are made here, once, outside the
    strategy, and stored under the name Keras looks them up by."""
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    for kind in ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss"):
        skipset = saving_lib.get_attr_skipset(kind)
        global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", skipset)


def team() -> Team | None:
    """The running cluster of two or more workers, or None (one machine)."""
    return _team if _team is not None and len(_team.cluster.members) > 1 else None


def writes() -> bool:
    """Whether this process writes what outlives the run: on one machine always; in a cluster only
    the chief (known from TF_CONFIG, before the strategy exists)."""
    cluster = from_environment()
    return cluster is None or cluster.is_chief


def scratch(out: Path) -> Path:
    """A worker's own scratch folder for a run of the bundle `out`: in the system's temporary
    folder, named after the bundle's path and the worker, so a worker restarted after a failure
    reuses (and empties) the same one."""
    cluster = from_environment()
    key = hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:10]
    who = f"rank{cluster.rank}" if cluster else "local"
    return Path(tempfile.gettempdir()) / f"{Path(out).name}.{who}.{key}.work"


# --- Keras under a multi-worker strategy --------------------------------------------------------

def fit_in_cluster(model, spec) -> None:
    """Mend two places where Keras 3 (3.15, and its main branch as of this writing; see
    keras-team/keras#20585) fails under a multi-worker strategy, for this `model`'s `fit` on
    datasets whose elements have the structure, shapes and dtypes of `spec` (an element_spec):

    - fit builds the loss, metrics and optimizer from a first batch averaged over the workers
      (`strategy.reduce` of a structure of tensors, which a multi-worker strategy refuses: "Attempt
      to convert a value (PerReplica...) to a Tensor"). Only shapes and dtypes are needed: `spec`
      has them.
    - each step's logs are averaged over the workers with `strategy.reduce("MEAN", value, axis=0)`,
      which fails on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions"). The
      steps here give each log as a vector of one, which that reduction turns back into a scalar.
      (The epoch's logs, which callbacks see, are read from the metrics themselves: every worker's
      batches count, and every worker reads the same values.)"""
    import tensorflow as tf

    def symbolic_build(iterator=None, data_batch=None):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=spec)

    def vectors(step):
        return lambda data: tf.nest.map_structure(lambda value: tf.reshape(value, [-1]), step(data))

    model._maybe_symbolic_build = symbolic_build
    if "train_step" not in vars(model):  # once per model
        model.train_step, model.test_step = vectors(model.train_step), vectors(model.test_step)
