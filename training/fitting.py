"""The fit schedule: the head on a frozen pretrained base, then its top fine-tuned at a lower rate."""

from __future__ import annotations

from training.backbones import is_pretrained, leaf_layers


def unfreeze_top(base, fraction: float) -> int:
    """Unfreeze the top `fraction` of the backbone's layers, BatchNorm excepted (keras-io recipe)."""
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


def fit_two_phases(model, base, args, train, val, compile_model, epochs=None, fine_tune_epochs=None,
                   first_phase_fraction: float = 0.0):
    """Phase 1: train the head on a frozen pretrained base (or its top `first_phase_fraction`
    too, as the age & gender course does), or everything from scratch.
    Phase 2: unfreeze the top `--fine-tune-fraction` of a pretrained base and go on at a tenth of the rate.
    `train` is (x, y) arrays or a tf.data.Dataset; epochs default to --epochs / --fine-tune-epochs."""
    epochs = args.epochs if epochs is None else epochs
    fine_tune_epochs = args.fine_tune_epochs if fine_tune_epochs is None else fine_tune_epochs
    fit = dict(validation_data=val, verbose=2)
    if isinstance(train, tuple):
        fit["batch_size"] = args.batch_size
    else:
        train = (train,)
    if is_pretrained(args.weights) and first_phase_fraction > 0:
        print(f"Phase 1: the head and the top {unfreeze_top(base, first_phase_fraction)} backbone layers train")
    compile_model(model, args.learning_rate)
    model.fit(*train, epochs=epochs, callbacks=[early_stopping(args.patience)], **fit)
    if fine_tune_epochs <= 0:
        return
    if is_pretrained(args.weights):
        unfrozen = unfreeze_top(base, args.fine_tune_fraction)
        print(f"Fine-tuning: {unfrozen} backbone layers unfrozen, learning rate {args.learning_rate / 10:g}")
    else:
        print(f"Continuing the from-scratch network at learning rate {args.learning_rate / 10:g}")
    compile_model(model, args.learning_rate / 10)
    model.fit(*train, epochs=fine_tune_epochs, callbacks=[early_stopping(args.patience)], **fit)


def early_stopping(patience: int):
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
