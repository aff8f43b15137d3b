"""Turning what a caller passes into wire values, and results into what a caller wants.

Inputs: NumPy arrays of any numeric dtype and memory order, nested lists,
anything with ``__array__``, and data frames (pandas or anything shaped like
one) -- a frame whose column names are all strings travels as a
:class:`protocol.Table`, so the server records ``feature_names_in_``.

Outputs: arrays stay NumPy arrays (read-only views of the received frames: no
copy); ``set_output(transform="pandas" | "polars")`` wraps ``transform``
results in that library's frame, on this side of the wire.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from protocol import ALLOWED_DTYPES, DataRef, Table

__all__ = ["frame_index", "to_wire_value", "wrap_output"]

_PASS_THROUGH = (type(None), bool, int, float, str, bytes, DataRef, Table)


def _is_frame(value: Any) -> bool:
    """A pandas/polars-style data frame: 2-D, named columns, convertible to NumPy."""
    module = type(value).__module__
    return (
        module.split(".", 1)[0] in ("pandas", "polars")
        and hasattr(value, "columns")
        and hasattr(value, "to_numpy")
        and getattr(value, "ndim", 2) == 2
    )


def _numeric(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself when the wire takes its dtype, else the nearest dtype it does take."""
    dt = arr.dtype
    if dt.str in ALLOWED_DTYPES or dt.kind in "bUS":
        return arr
    if dt.kind == "f":  # float16, longdouble: as scikit-learn's check_array would
        return arr.astype(np.float64)
    if dt.kind == "c":
        raise ValueError("Complex data not supported")
    if dt.kind == "O":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            flat = arr.reshape(-1)
            if all(isinstance(x, str) for x in flat):
                return arr  # strings (feature names) travel as a string array
            raise
    if dt.kind in "iu":  # a non-native width such as intc on odd platforms
        return arr.astype(np.int64 if dt.kind == "i" else np.uint64)
    raise TypeError(f"arrays of dtype {dt} cannot be sent")


def _frame_to_wire(frame: Any) -> np.ndarray | Table:
    columns = list(frame.columns)
    types = sorted({type(c).__qualname__ for c in columns})
    if len(types) > 1 and "str" in types:
        # scikit-learn refuses these at fit time; they cannot cross as names.
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. "
            "If you want feature names to be stored and validated, you must convert "
            "them all to strings, by using X.columns = X.columns.astype(str) for "
            "example. Otherwise you can remove feature / column names from your input "
            "data, or convert them all to a non-string data type."
        )
    data = _numeric(np.asarray(frame.to_numpy()))
    if data.dtype.kind in "OUS":
        data = data.astype(np.float64)
    if columns and all(isinstance(c, str) for c in columns) and data.ndim == 2:
        return Table(columns=columns, data=data)
    return data  # scikit-learn records no feature names unless all are strings


def to_wire_value(value: Any) -> Any:
    """``value`` in a form :func:`protocol.encode` takes, arrays left uncopied where possible.

    Parameters
    ----------
    value : any
        None, scalars, str, :class:`~protocol.DataRef`, NumPy arrays (any
        numeric dtype or order), nested lists or tuples, objects with
        ``__array__``, pandas/polars data frames and series, dicts of these.

    Raises
    ------
    ValueError, TypeError
        Complex numbers, or objects with no array form.
    """
    if isinstance(value, _PASS_THROUGH):
        return value
    if isinstance(value, np.ndarray):
        return _numeric(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: to_wire_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:  # ragged
            arr = None
        if arr is None or arr.dtype == object:
            return [to_wire_value(v) for v in value]
        return _numeric(arr)
    if _is_frame(value):
        return _frame_to_wire(value)
    if hasattr(value, "__array__") or hasattr(value, "to_numpy"):
        arr = value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)
        return _numeric(np.asarray(arr))
    return value  # the codec names the type it cannot send


def frame_index(value: Any) -> Any:
    """The row index of a pandas DataFrame input (kept by ``set_output``), else None."""
    if type(value).__module__.split(".", 1)[0] == "pandas" and hasattr(value, "index"):
        return value.index
    return None


def _require(library: str) -> Any:
    try:
        return importlib.import_module(library)
    except ImportError as exc:
        # scikit-learn's own wording (sklearn.utils._set_output.check_library_installed).
        raise ImportError(
            f"Setting output container to '{library}' requires {library} to be installed"
        ) from exc


def check_container(container: str | None) -> None:
    """Raise ImportError now if ``set_output(transform=container)`` cannot be honoured."""
    if container in ("pandas", "polars"):
        _require(container)


def wrap_output(data: Any, container: str, columns: Any, index: Any = None) -> Any:
    """``data`` as a ``container`` frame (``"pandas"`` or ``"polars"``); else unchanged.

    Parameters
    ----------
    data : ndarray of shape (n_samples, n_outputs)
    container : {"default", "pandas", "polars"}
    columns : array of str
        Column names (from ``get_feature_names_out``).
    index : pandas Index, optional
        Row labels of the input frame, kept on pandas output.
    """
    if container == "pandas":
        pd = _require("pandas")
        return pd.DataFrame(data, columns=list(columns), index=index, copy=False)
    if container == "polars":
        pl = _require("polars")
        return pl.DataFrame(np.asarray(data), schema=[str(c) for c in columns], orient="row")
    return data
