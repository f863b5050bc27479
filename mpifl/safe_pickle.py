"""Loading untrusted pickles (CIFAR batches, FedScale traces) without running their code.

A pickle names the callables that rebuild it; an ordinary `pickle.load` calls whatever it
names (`os.system` included). `load` admits only plain containers, numbers, strings,
bytes and numpy arrays of non-object dtype; anything else is refused with
`pickle.UnpicklingError` before it is called.
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

import numpy as np

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (not plain data)")
        return super().find_class(module, name)


def load(fh: IO[bytes], encoding: str = "ASCII") -> Any:
    """Unpickle plain data from `fh`; object arrays and other classes are refused."""
    data = _Restricted(fh, encoding=encoding).load()
    _refuse_objects(data)
    return data


def loads(raw: bytes, encoding: str = "ASCII") -> Any:
    """`load` from bytes."""
    return load(io.BytesIO(raw), encoding)


def _refuse_objects(value: Any) -> None:
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise pickle.UnpicklingError("refused an object array (not plain data)")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_objects(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_objects(item)
