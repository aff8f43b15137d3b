"""Data references: ``.npy`` files under the server's data directory (SPEC 3.3).

An argument that is a :class:`protocol.DataRef` stands for the array stored in
the file; the server memory-maps it (read-only, from the one file descriptor
it checked) instead of receiving the bytes. In a request's ``out`` map a reference names a file the
server creates to hold a per-sample output, through the ``allocate`` function
of the call's context.

Every path is checked before it is touched: relative, no ``..``, ending in
``.npy``, and -- after resolving symbolic links -- still inside the data
directory, and once more after opening, against the file actually opened (a
directory swapped for a link in between is caught). Inputs must be C-ordered
with an allowlisted dtype; outputs must not exist yet.
"""

from __future__ import annotations

import os
import stat
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from protocol import ALLOWED_DTYPES, DataRef

from .errors import DataRefError


def _wire_dtype(dtype: np.dtype) -> str:
    return "|b1" if dtype.kind == "b" else dtype.str


class DataDir:
    """The data directory of one server (or none, when it was started without one).

    Parameters
    ----------
    root : path or None
        The directory; ``None`` refuses every data reference.
    """

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root: Path | None = Path(root).resolve() if root is not None else None
        # Outputs this server created, while something still holds their array:
        # resolved path -> array, so that `get` of an attribute held in one of
        # them can answer with a reference. Weak, so that a long-lived server
        # forgets each output once no instance or call uses it.
        self._created: weakref.WeakValueDictionary[Path, np.ndarray] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    # -- paths -------------------------------------------------------------

    def _path(self, ref: DataRef) -> Path:
        """The resolved file a reference names, after the syntactic and containment checks."""
        if self.root is None:
            raise DataRefError(
                "this server has no data directory; start it with --data-dir DIR "
                "to use data references"
            )
        raw = ref.path
        if not isinstance(raw, str) or not raw:
            raise DataRefError("a data reference needs a non-empty path")
        if "\x00" in raw or "\\" in raw:
            raise DataRefError(f"data reference {raw!r}: invalid character in path")
        rel = PurePosixPath(raw)
        if rel.is_absolute() or raw.startswith("/"):
            raise DataRefError(
                f"data reference {raw!r}: absolute paths are refused; "
                "give a path relative to the data directory"
            )
        if ".." in rel.parts:
            raise DataRefError(f"data reference {raw!r}: '..' is refused in paths")
        if rel.suffix != ".npy":
            raise DataRefError(f"data reference {raw!r}: only .npy files can be referenced")
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise DataRefError(
                f"data reference {raw!r}: it leaves the data directory (through a symbolic link)"
            )
        return path

    # -- inputs ------------------------------------------------------------

    def load(self, ref: DataRef) -> np.ndarray:
        """The array a reference stands for, memory-mapped read-only.

        Raises
        ------
        DataRefError
            For a refused path, a missing file, a file that is not a C-ordered
            ``.npy`` array of an allowlisted dtype.
        """
        path = self._path(ref)
        try:
            # O_NOFOLLOW: a last component turned into a link since the check is refused.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise DataRefError(
                f"data reference {ref.path!r}: no such file in the data directory"
            ) from None
        except OSError as exc:
            raise DataRefError(f"data reference {ref.path!r}: cannot be opened ({exc})") from None
        with os.fdopen(fd, "rb") as f:
            # Everything below reads this one open file, never the name again.
            self._check_opened(f.fileno(), ref)
            try:
                version = np.lib.format.read_magic(f)
                shape, fortran_order, dtype = _read_header(f, version)
            except DataRefError:
                raise
            except Exception as exc:
                raise DataRefError(
                    f"data reference {ref.path!r}: not a valid .npy file ({exc})"
                ) from None
            if fortran_order and len(shape) > 1:
                raise DataRefError(
                    f"data reference {ref.path!r}: Fortran-ordered arrays are refused; "
                    "save it in C order (np.save(path, np.ascontiguousarray(a)))"
                )
            if dtype.hasobject or _wire_dtype(dtype) not in ALLOWED_DTYPES:
                raise DataRefError(
                    f"data reference {ref.path!r}: dtype {dtype} is not in the protocol's allowlist"
                )
            try:
                if 0 in shape:
                    # An empty file region cannot be memory-mapped.
                    return np.empty(shape, dtype=dtype)
                # The map keeps its own reference to the file after f is closed.
                return np.memmap(f, dtype=dtype, mode="r", offset=f.tell(), shape=shape)
            except Exception as exc:
                raise DataRefError(
                    f"data reference {ref.path!r}: cannot be loaded ({exc})"
                ) from None

    def _check_opened(self, fd: int, ref: DataRef) -> None:
        """Refuse an open file that is not a regular file inside the data directory now.

        The name was checked before it was opened; a directory on the way could
        have been swapped for a link to elsewhere in between. So the name is
        resolved again and must still lead inside the directory, to this very
        file: whichever way the swap went, one of the two fails.
        """
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise DataRefError(f"data reference {ref.path!r}: no such file in the data directory")
        again = self._path(ref)
        try:
            same = os.path.samestat(opened, os.stat(again))
        except OSError:
            same = False
        if not same:
            raise DataRefError(
                f"data reference {ref.path!r}: it leaves the data directory "
                "(the path changed while it was opened)"
            )

    def resolve_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``args`` with each top-level :class:`DataRef` value replaced by its array."""
        return {k: self.load(v) if isinstance(v, DataRef) else v for k, v in args.items()}

    # -- outputs -----------------------------------------------------------

    def check_output(self, ref: DataRef) -> Path:
        """The path an output will be written to; refuses one that already exists."""
        path = self._path(ref)
        if os.path.lexists(self.root / ref.path) or os.path.lexists(path):  # type: ignore[operator]
            raise DataRefError(
                f"output data reference {ref.path!r}: the file already exists; "
                "outputs are never overwritten"
            )
        return path

    def create_output(self, ref: DataRef, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Create the ``.npy`` file of an output and return it memory-mapped for writing."""
        dtype = np.dtype(dtype)
        if dtype.hasobject or _wire_dtype(dtype) not in ALLOWED_DTYPES:
            raise DataRefError(
                f"output data reference {ref.path!r}: dtype {dtype} is not in the allowlist"
            )
        path = self.check_output(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Claim the name atomically (never follow a link planted in the meantime).
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0))
        except FileExistsError:
            raise DataRefError(
                f"output data reference {ref.path!r}: the file already exists; "
                "outputs are never overwritten"
            ) from None
        os.close(fd)
        try:
            if 0 in shape:
                np.save(path, np.empty(shape, dtype=dtype))
                arr = np.empty(shape, dtype=dtype)
            else:
                arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        except Exception:
            path.unlink(missing_ok=True)
            raise
        with self._lock:
            self._created[path] = arr
        return arr

    def remove_created(self, ref: DataRef) -> None:
        """Remove an output file this server created (after a failed call)."""
        path = self._path(ref)
        with self._lock:
            created = self._created.pop(path, None)
        if created is not None:
            path.unlink(missing_ok=True)

    def write_output(self, ref: DataRef, value: np.ndarray) -> DataRef:
        """Write an already computed array to a new output file."""
        value = np.asarray(value)
        arr = self.create_output(ref, value.shape, value.dtype)
        if arr.size:
            arr[...] = value
            flush(arr)
        return ref

    def ref_for(self, value: Any) -> DataRef | None:
        """A reference to ``value`` if it is a whole output file this server created."""
        if self.root is None or not isinstance(value, np.memmap) or not value.filename:
            return None
        path = Path(value.filename).resolve()
        with self._lock:
            created = self._created.get(path)
        if created is None or value.shape != created.shape or not path.is_relative_to(self.root):
            return None
        return DataRef(path.relative_to(self.root).as_posix())


def flush(arr: np.ndarray) -> None:
    """Flush a memory-mapped array to its file (no-op for ordinary arrays)."""
    if isinstance(arr, np.memmap):
        arr.flush()


def _read_header(f: Any, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    # Format 3.0 (UTF-8 header) has no public reader of its own.
    reader = getattr(np.lib.format, "_read_array_header", None)
    if reader is None:
        raise DataRefError(f"unsupported .npy format version {version}")
    return reader(f, version)


class OutputSet:
    """The ``out`` map of one call: which outputs go to which files.

    Parameters
    ----------
    data_dir : DataDir
        Where the files are created.
    outputs : dict of str to DataRef
        ``"result"`` and/or per-sample attribute names (``"labels_"``).
    result_names : tuple of str
        The core's allocation names that stand for this method's result
        (``("predict",)`` for ``predict``, ``("labels_", "predict")`` for
        ``fit_predict``...).
    """

    def __init__(
        self, data_dir: DataDir, outputs: dict[str, DataRef], result_names: tuple[str, ...]
    ) -> None:
        self.data_dir = data_dir
        self.outputs = outputs
        self.result_names = result_names
        self.allocated: dict[str, np.ndarray] = {}

    def check(self) -> None:
        """Refuse, before running anything, an output that cannot be created."""
        paths = set()
        for ref in self.outputs.values():
            path = self.data_dir.check_output(ref)
            if path in paths:
                raise DataRefError(f"output data reference {ref.path!r} is named twice")
            paths.add(path)

    def allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The call context's allocator: a file for a requested output, else ``np.empty``."""
        key: str | None = None
        if name in self.outputs and name != "result" and name not in self.allocated:
            key = name
        elif (
            "result" in self.outputs
            and name in self.result_names
            and "result" not in self.allocated
        ):
            key = "result"
        if key is None:
            return np.empty(shape, dtype=dtype)
        arr = self.data_dir.create_output(self.outputs[key], shape, dtype)
        self.allocated[key] = arr
        return arr

    def discard(self) -> None:
        """Remove the files this call created (it failed: they hold nothing valid)."""
        for key in self.allocated:
            self.data_dir.remove_created(self.outputs[key])
        self.allocated.clear()

    def finish(self, result: Any, attributes: Mapping[str, Any]) -> Any:
        """Flush the files; write outputs the core did not allocate; map the result.

        Parameters
        ----------
        result : any
            What the method returned.
        attributes : mapping
            The instance's per-sample attributes after the call (name -> value),
            for outputs such as ``labels_`` the core computed without allocating.

        Returns
        -------
        The result to send: the ``"result"`` reference when one was asked for.
        """
        for arr in self.allocated.values():
            flush(arr)
        for name in list(self.outputs):
            if name == "result" or name in self.allocated:
                continue
            value = attributes.get(name)
            if isinstance(value, np.ndarray):
                self._write(name, value)
        if "result" not in self.outputs:
            return result
        ref = self.outputs["result"]
        mine = self.allocated.get("result")
        if mine is not None and isinstance(result, np.ndarray) and _same_array(result, mine):
            return ref
        if mine is not None:
            # The core allocated the file but returned something else: keep the
            # file consistent with the reply.
            if isinstance(result, np.ndarray) and result.shape == mine.shape:
                mine[...] = result
                flush(mine)
                return ref
            raise DataRefError("the method's result does not fit the output file it allocated")
        if not isinstance(result, np.ndarray):
            raise DataRefError("this method's result is not an array and cannot go to a file")
        self._write("result", result)
        return ref

    def _write(self, key: str, value: np.ndarray) -> None:
        """Write a computed array to output ``key``'s new file, which :meth:`discard` removes."""
        value = np.asarray(value)
        arr = self.data_dir.create_output(self.outputs[key], value.shape, value.dtype)
        self.allocated[key] = arr  # recorded before filling: a failure below still cleans up
        if arr.size:
            arr[...] = value
            flush(arr)


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )
