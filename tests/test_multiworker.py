"""Training on several machines, as two real worker processes of one recipe on loopback ports
(tests/support/local_cluster.py): each recipe trains as a MultiWorkerMirroredStrategy cluster and its chief's
bundle loads in the app; a worker killed mid-run leaves no bundle and the same commands resume;
a worker that cannot reach the others stops in the time given and names them."""

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, free_port
from support.local_cluster import THREADS, LocalCluster, tf_config

from core.bundle import load_bundle
from training import cluster, inputs

# Two epochs of a small from-scratch network on tiny images: the cluster, not the learning, is tested.
TWO_EPOCHS = ["--weights", "none", "--image-size", "32", "--epochs", "2", "--fine-tune-epochs", "0", "--batch-size",
              "4"]


@pytest.fixture(scope="module")
def dogs(tmp_path_factory):
    from training.synthetic.dogs import make_stanford_dogs

    return make_stanford_dogs(tmp_path_factory.mktemp("dogs"), breeds=3, per_breed=12, size=64, lists="root")


def epochs_logged(bundle, stage):
    with open(bundle / "logs" / f"{stage}.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def trained(tmp_path, module, argv, timeout=600, **options):
    """Run `module` as a cluster of two workers to its end; the cluster, once both succeeded."""
    run = LocalCluster(tmp_path / "cluster", module, argv, env={"TMPDIR": str(scratch(tmp_path))}, **options).start()
    exits = run.wait(timeout)
    assert exits == {0: 0, 1: 0}, run.logs()
    return run


def scratch(tmp_path):
    folder = tmp_path / "tmp"
    folder.mkdir(exist_ok=True)
    return folder


def only_the_chief_wrote(run, out, tmp_path):
    """One bundle at `out`, no work folder beside it, no scratch folder left by the other worker,
    which says the chief wrote it; both workers end with the same network (their own evaluations
    of the test split agree)."""
    assert (out / "task.json").is_file() and (out / "config.json").is_file()
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name)) == [out.name]
    assert list(scratch(tmp_path).glob("*.work")) == []
    assert "Model bundle written to" in run.log(0), "the chief did not write the bundle"
    assert "Model bundle written to" not in run.log(1), "worker 1, not the chief, wrote a bundle too"
    assert "the chief wrote the bundle" in run.log(1)
    results = [[line for line in run.log(rank).splitlines() if line.startswith("test")] for rank in (0, 1)]
    assert results[0] and results[0] == results[1], results


@pytest.mark.slow
def test_a_single_label_recipe_trains_on_two_workers_each_on_its_share(dogs, tmp_path):
    from tasks import dog_breed

    out = tmp_path / "dog_breed"
    run = trained(tmp_path, "training.dog_breed", ["--data", dogs, "--out", out, "--backbone", "small", *TWO_EPOCHS])
    log = run.log(0)
    assert "Training on 2 replicas (CollectiveAllReduceStrategy) on 2 machines, this one worker 0" in log
    # Each worker reads half of the training records per epoch, in steps of its part of the global
    # batch (4 per replica x 2 replicas): the whole global batches of its half, each made of 2 steps.
    train = int(re.search(r"(\d+) train", log).group(1))
    steps = (train // 2) // 8 * 2
    assert re.findall(r"Epoch \d/2\n(\d+)/(\d+) -", log) == [(str(steps), str(steps))] * 2, log
    only_the_chief_wrote(run, out, tmp_path)
    bundle = load_bundle(out, "dog_breed", dog_breed.METADATA)
    assert len(bundle.labels) == 3 and epochs_logged(out, "classifier-1") == [0, 1]


@pytest.mark.slow
def test_a_multi_label_recipe_trains_on_two_workers(tmp_path):
    from tasks import hashtags
    from training.synthetic.motifs import make_harrison

    data = make_harrison(tmp_path / "harrison", count=60, size=48)
    out = tmp_path / "hashtags"
    run = trained(tmp_path, "training.hashtags", ["--data", data, "--out", out, "--backbone", "conv4-gap", *TWO_EPOCHS])
    only_the_chief_wrote(run, out, tmp_path)
    bundle = load_bundle(out, "hashtags", hashtags.METADATA)
    assert set(bundle.metadata["thresholds"]["per_label"]) == set(bundle.labels)
    assert epochs_logged(out, "classifier-1") == [0, 1]


@pytest.mark.slow
def test_caries_trains_on_two_workers(tmp_path):
    from tasks import caries
    from training import masks_from_annotations
    from training.synthetic.radiographs import make_caries_dataset

    images, export = make_caries_dataset(tmp_path / "raw", count=20, size=(64, 48), teeth=(1, 2))
    masks_from_annotations.main(["--annotations", str(export), "--images", str(images), "--out", str(tmp_path / "data")])
    out = tmp_path / "caries"
    run = trained(tmp_path, "training.caries", ["--data", tmp_path / "data", "--out", out, "--image-size", "32",
                                                "--depth", "2", "--width", "4", "--epochs", "2", "--batch-size", "4"])
    only_the_chief_wrote(run, out, tmp_path)
    bundle = load_bundle(out, "caries", caries.METADATA)
    assert bundle.labels == ["caries"] and epochs_logged(out, "segmenter-1") == [0, 1]


@pytest.mark.slow
def test_age_and_gender_trains_both_networks_on_two_workers(tmp_path):
    from tasks import age_gender
    from training.synthetic.drawn_faces import make_imdb_wiki, make_utkface

    make_imdb_wiki(tmp_path / "faces", count=40, size=64, seed=0)
    make_utkface(tmp_path / "faces", count=40, size=64, seed=1)
    out = tmp_path / "age_gender"
    run = trained(tmp_path, "training.age_gender", ["--data", tmp_path / "faces", "--out", out, "--backbone", "small",
                                                    "--angle-bin", "10", *TWO_EPOCHS])
    only_the_chief_wrote(run, out, tmp_path)
    bundle = load_bundle(out, "age_gender", age_gender.METADATA)
    assert set(bundle.networks) == {"gender_age", "rotation"}
    assert epochs_logged(out, "rotation-1") == [0, 1] and epochs_logged(out, "gender_age-1") == [0, 1]


@pytest.mark.slow
def test_the_workers_hold_the_same_network_after_every_epoch(tmp_path):
    """BatchNorm's moving statistics, which Keras 3 updates on each worker from its own batches,
    are averaged over the workers before each validation: every variable, the same on both."""
    run = trained(tmp_path, "tests.support.cluster_probe", [])
    held = [sorted(line for line in run.log(rank).splitlines() if line.startswith("epoch ")) for rank in (0, 1)]
    assert any("moving_mean" in line for line in held[0]) and len(held[0]) == len(held[1]) > 0, run.logs()
    assert held[0] == held[1]


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_no_bundle_and_the_same_commands_resume(dogs, tmp_path):
    out = tmp_path / "dog_breed"
    run = LocalCluster(tmp_path / "cluster", "training.dog_breed",
                       ["--data", dogs, "--out", out, "--backbone", "small", "--weights", "none", "--image-size", "32",
                        "--epochs", "8", "--patience", "50", "--fine-tune-epochs", "0", "--batch-size", "2"],
                       env={"TMPDIR": str(scratch(tmp_path))}).start()
    progress = out.with_name("dog_breed.work") / "classifier-1" / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 300
    try:
        while json.loads(progress.read_text() if progress.is_file() else "{}").get("epoch", 0) < 2:
            assert time.monotonic() < deadline and run.launcher.poll() is None, run.logs()
            time.sleep(0.1)
        run.kill(1)  # the worker that is not the chief, as a lost machine: no warning, no cleanup
    finally:
        exits = run.wait(120)
    # The chief loses its peer in the middle of a step and stops; nothing is written.
    assert exits[1] == -9 and exits[0] != 0, run.logs()
    done = json.loads(progress.read_text())["epoch"]
    assert not out.exists() and 2 <= done < 8, run.logs()

    exits = run.start().wait(600)  # the same commands, again
    assert exits == {0: 0, 1: 0}, run.logs()
    for rank in (0, 1):
        assert f"classifier-1: resuming after epoch {done} of 8" in run.log(rank), f"worker {rank} did not resume"
    # One complete history: every epoch once, none lost and none run twice.
    assert epochs_logged(out, "classifier-1") == list(range(8))
    only_the_chief_wrote(run, out, tmp_path)


@pytest.mark.slow
def test_a_worker_started_with_other_options_is_refused_by_every_worker(dogs, tmp_path):
    out = tmp_path / "dog_breed"
    run = LocalCluster(tmp_path / "cluster", "training.dog_breed",
                       ["--data", dogs, "--out", out, "--backbone", "small", *TWO_EPOCHS[:-4]],
                       extra={0: ["--epochs", "2"], 1: ["--epochs", "3"]}).start()
    exits = run.wait(300)
    assert exits[0] != 0 and exits[1] != 0, run.logs()
    assert "worker 1 was started with other options than the chief (epochs: 3 here, 2 on the chief)" in run.log(1)
    assert "worker 0: another worker was started with other options than the chief" in run.log(0)
    assert not out.exists()


@pytest.mark.slow
def test_a_worker_that_cannot_reach_the_others_stops_in_the_time_given_and_names_them(dogs, tmp_path):
    """TensorFlow would wait for the missing worker forever; --cluster-timeout bounds the wait."""
    with socket.socket() as bound:  # a loopback port that refuses connections: bound, never listening
        bound.bind(("127.0.0.1", 0))
        missing = f"127.0.0.1:{bound.getsockname()[1]}"
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "training.dog_breed", "--data", str(dogs), "--out", str(tmp_path / "out"),
             "--backbone", "small", *TWO_EPOCHS, "--cluster-timeout", "3"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, **THREADS, "TF_CONFIG": tf_config([f"127.0.0.1:{free_port()}", missing], 0)})
        elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert (f"could not reach worker 1 at {missing} (Connection refused) within 3 s (--cluster-timeout)"
            in result.stderr), result.stderr[-2000:]
    # Started, gave up after 3 s, stopped: the rest is Python and TensorFlow starting up.
    assert 3 <= elapsed < 120
    assert list(tmp_path.iterdir()) == []  # no bundle, and no work folder for a run that never began


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "cluster names no \"worker\""),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "task is worker 2, but the cluster has 2 worker address(es)"),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}', 'list of "host:port"'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', "training runs in 'chief'"),
])
def test_a_tf_config_that_cannot_describe_a_cluster_is_refused_with_the_reason(text, message):
    with pytest.raises(cluster.ClusterError, match=re.escape(message)):
        cluster.from_environment({"TF_CONFIG": text})


def test_the_chief_is_the_chief_task_or_worker_0_and_ranks_follow_it():
    config = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}}
    ranks = {(kind, index): cluster.from_environment({"TF_CONFIG": json.dumps({**config, "task": {
        "type": kind, "index": index}})}) for kind, index in (("chief", 0), ("worker", 0), ("worker", 1))}
    assert {key: (c.rank, c.is_chief) for key, c in ranks.items()} == {
        ("chief", 0): (0, True), ("worker", 0): (1, False), ("worker", 1): (2, False)}
    alone = cluster.from_environment({"TF_CONFIG": tf_config(["w:1", "w:2"], 0)})
    assert alone.is_chief and alone.peers() == [("worker 1", "w:2")]
    assert cluster.from_environment({}) is None


def test_each_worker_reads_its_own_share_a_new_one_each_epoch(tmp_path):
    """Two workers' shares of 23 records: disjoint, 11 each (so both take the same number of steps:
    two batches of 4), drawn afresh every epoch from all the records."""
    import tensorflow as tf

    source = inputs.DecodedRecords(list(range(23)), lambda record: np.zeros((2, 2, 3), np.uint8), "blank")
    signature = (inputs.image_signature(2), tf.TensorSpec((), tf.int64))

    def epochs(rank, count=3):
        dataset = inputs.batches(source, lambda index, decoded, rng: (decoded[0], index), signature, batch_size=4,
                                 seed=5, shard=(2, rank), replicas=2)
        return [sorted(int(i) for _, labels, _ in dataset for i in labels) for _ in range(count)]

    first, second = epochs(0), epochs(1)
    for mine, theirs in zip(first, second):
        assert len(mine) == len(theirs) == 8 and not set(mine) & set(theirs)
    # Over three epochs a worker reads more records than a fixed share of 11 holds.
    assert len(set().union(*first)) > 11 and len(set().union(*second)) > 11
