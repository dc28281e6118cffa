"""Serving one network to concurrent requests: one traced call, passes side by side, shared batches.

The app answers requests on threads, one picture each. `CompiledNetwork` wraps a Keras model so
that those requests cost a forward pass each and no more: `model.predict` rebuilds its input
pipeline on every call, which on a CPU costs more than a small network's pass. Settings
(APP_PASSES, APP_MAX_BATCH) are read by core/settings.py.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from core import settings


class CompiledNetwork:
    """A Keras model behind one traced tf.function, warmed once, whose concurrent calls run
    side by side up to a number of passes, and beyond that share forward passes.

    `model.predict` rebuilds its data pipeline on every call, which costs more than
    the forward pass of a small network on a CPU; a traced call with a fixed input
    signature costs only the forward pass. The batch dimension stays free, so a
    batch of any size reuses the same graph.

    Requests arrive one picture at a time. Up to `passes` forward passes run at once; a call
    that finds all of them busy waits, and the next pass to start takes every waiting call as
    one batch (up to `max_batch` pictures). A lone request never waits for company (no timer,
    unlike Gradio's `batch=True`), and each request keeps its own handler and its own error.
    Which pays depends on the device: on a CPU a batch of 8 costs 8 passes of one, but two or
    four passes at once keep the cores busier than one (a single pass leaves them idle between
    ops); on a GPU one batched pass is what fills the device. Measured in docs/serving.md, "Under
    load".
    """

    def __init__(self, model, max_batch: int | None = None, passes: int | None = None):
        import tensorflow as tf

        self.model = model
        # APP_MAX_BATCH=1 turns the sharing off, APP_PASSES=1 the side-by-side passes (to compare;
        # see bench/serve.py --clients).
        self.max_batch = max_batch or settings.number("MAX_BATCH", 16, minimum=1)
        self.passes = passes or settings.number("PASSES", 0, minimum=0) or default_passes()
        self.input_shape = tuple(model.inputs[0].shape[1:])
        spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
        # A partial, not a lambda: TensorFlow counts traces per code object, and one lambda's code
        # shared by every network made their one trace each look like "excessive retracing".
        self._call = tf.function(functools.partial(model, training=False), input_signature=[spec])
        self._waiting: list[_Call] = []
        self._running = 0
        self._turn = threading.Condition()
        self(np.zeros((1, *self.input_shape), np.float32))  # trace and warm now, not on the first request

    def __call__(self, batch: np.ndarray):
        call = _Call(np.asarray(batch, np.float32))
        with self._turn:
            self._waiting.append(call)
            while True:
                # Wait while another thread's pass holds this call, or every pass is taken.
                while not call.done and (call.taken or self._running >= self.passes):
                    self._turn.wait()
                if call.done:
                    return call.result()
                # This thread runs the next pass, for the oldest waiting calls (maybe not its own,
                # when more than max_batch pictures wait: then it goes round again).
                self._running += 1
                taken = self._take()
                self._turn.release()
                try:
                    self._forward(taken)
                finally:
                    self._turn.acquire()
                    self._running -= 1
                    self._turn.notify_all()

    def _take(self) -> list[_Call]:
        """The waiting calls, oldest first, up to max_batch pictures (at least one call)."""
        taken, pictures = [], 0
        while self._waiting and (not taken or pictures + len(self._waiting[0].inputs) <= self.max_batch):
            call = self._waiting.pop(0)
            call.taken = True
            taken.append(call)
            pictures += len(call.inputs)
        return taken

    def _forward(self, calls: list[_Call]) -> None:
        import tensorflow as tf

        try:
            inputs = calls[0].inputs if len(calls) == 1 else np.concatenate([c.inputs for c in calls])
            outputs = tf.nest.map_structure(lambda t: t.numpy(), self._call(inputs))
        except Exception as error:
            if len(calls) > 1:  # one caller's bad input must not fail the others: each alone
                for call in calls:
                    self._forward([call])
                return
            calls[0].error, calls[0].done = error, True
            return
        start = 0
        for call in calls:
            end = start + len(call.inputs)
            call.output = tf.nest.map_structure(lambda a, s=start, e=end: a[s:e], outputs)
            call.done = True
            start = end


def default_passes() -> int:
    """Forward passes at once when APP_PASSES is not set: one on a GPU (a batched pass fills it), two
    on a CPU (bench/serve.py --clients; docs/serving.md, "Under load")."""
    import tensorflow as tf

    return 1 if tf.config.list_physical_devices("GPU") else 2


class _Call:
    """One caller's inputs, and what its forward pass gave."""

    def __init__(self, inputs: np.ndarray):
        self.inputs, self.output, self.error = inputs, None, None
        self.taken = self.done = False  # in a pass; that pass has finished

    def result(self):
        if self.error is not None:
            raise self.error
        return self.output
