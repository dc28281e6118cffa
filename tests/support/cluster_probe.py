"""A worker of a test cluster (tests/support/local_cluster.py) that shows what it holds: it fits a small
network with BatchNorm on blank records, as fitting.Run fits one in a cluster (the same
mending of Keras, the same distributed input, the same InStep callback), and prints after every
epoch a digest of each variable, so that a test can compare the workers.

    python -m tests.support.cluster_probe
"""

from __future__ import annotations

import hashlib

import numpy as np


def main() -> None:
    import keras
    import tensorflow as tf

    from training import cluster, fitting, inputs

    keras.utils.set_random_seed(1)
    strategy = fitting.distribution(60)
    team = cluster.team()
    replicas = strategy.num_replicas_in_sync
    source = inputs.DecodedRecords(list(range(48)), lambda record: np.full((8, 8, 3), record * 5 % 256, np.uint8), "probe")
    signature = (inputs.image_signature(8), tf.TensorSpec((), tf.int64))

    def example(index, decoded, rng):
        return decoded[0], index % 2

    train = inputs.batches(source, example, signature, 4 * replicas, seed=1, shard=fitting.shard_of(strategy),
                           replicas=replicas)
    val = inputs.batches(source, example, signature, 4 * replicas, replicas=replicas)

    class Digest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for variable in self.model.variables:
                digest = hashlib.sha1(np.asarray(variable.numpy()).tobytes()).hexdigest()[:12]
                print(f"epoch {epoch} {variable.path} {digest}", flush=True)

    with strategy.scope():
        inputs_ = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs_))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization(momentum=0.5)(x))
        model = keras.Model(inputs_, keras.layers.Dense(2, activation="softmax")(x))
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        cluster.fit_in_cluster(model, train.element_spec)
        (train, steps), (val, val_steps) = team.distributed(train), team.distributed(val)
        model.fit(train, validation_data=val, epochs=2, steps_per_epoch=steps, validation_steps=val_steps, verbose=2,
                  callbacks=[fitting.InStep(team), Digest()])


if __name__ == "__main__":
    main()
