"""Input conversion and output wrapping (no server needed)."""

from __future__ import annotations

import numpy as np
import pytest

import protocol
from client_py.values import to_wire_value, wrap_output


def test_arrays_pass_uncopied() -> None:
    arr = np.arange(6.0).reshape(3, 2)
    assert to_wire_value(arr) is arr
    big_endian = arr.astype(">f8")
    assert to_wire_value(big_endian) is big_endian


def test_nested_lists_and_scalars() -> None:
    out = to_wire_value([[1, 2], [3, 4]])
    assert isinstance(out, np.ndarray) and out.shape == (2, 2)
    assert to_wire_value(np.float32(1.5)) == 1.5
    assert to_wire_value({"a": [1.0, 2.0]})["a"].tolist() == [1.0, 2.0]
    ragged = to_wire_value([[1], [2, 3]])
    assert isinstance(ragged, list)
    names = to_wire_value(["a", "b"])
    assert names.dtype.kind == "U"
    assert to_wire_value(None) is None and to_wire_value("k-means++") == "k-means++"


def test_unusual_dtypes() -> None:
    assert to_wire_value(np.ones(3, np.float16)).dtype == np.float64
    with pytest.raises(ValueError, match="Complex data not supported"):
        to_wire_value(np.ones(3, complex))
    assert to_wire_value(np.array([1, 2], dtype=object)).dtype == np.float64


def test_dataframes() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    table = to_wire_value(frame)
    assert isinstance(table, protocol.Table) and table.columns == ["a", "b"]
    assert table.data.shape == (2, 2)
    plain = to_wire_value(pd.DataFrame(np.ones((2, 2))))
    assert isinstance(plain, np.ndarray)
    series = to_wire_value(pd.Series([1.0, 2.0]))
    assert isinstance(series, np.ndarray) and series.shape == (2,)


def test_table_round_trip() -> None:
    table = protocol.Table(["x", "y"], np.arange(6.0).reshape(3, 2))
    frames = protocol.encode({"args": {"X": table}})
    back = protocol.decode(frames)["args"]["X"]
    assert isinstance(back, protocol.Table) and back.columns == ["x", "y"]
    np.testing.assert_array_equal(np.asarray(back), table.data)
    indexed = protocol.Table(["x"], np.ones((2, 1)), index=np.array(["r0", "r1"], dtype=object))
    again = protocol.decode(protocol.encode({"t": indexed}))["t"]
    assert again.index.tolist() == ["r0", "r1"]


def test_table_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        protocol.Table(["x"], np.ones((2, 2)))
    with pytest.raises(ValueError):
        protocol.Table(["x"], np.ones(2))


def test_wrap_output_pandas() -> None:
    pd = pytest.importorskip("pandas")
    data = np.arange(4.0).reshape(2, 2)
    frame = wrap_output(data, "pandas", np.array(["c0", "c1"], dtype=object), pd.Index([5, 6]))
    assert list(frame.columns) == ["c0", "c1"] and list(frame.index) == [5, 6]
    assert wrap_output(data, "default", ["c0", "c1"]) is data


def test_mixed_column_names_are_refused_as_scikit_learn_does() -> None:
    pd = pytest.importorskip("pandas")
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    frame = pd.DataFrame(np.ones((4, 3)), columns=["a", 1, "c"])
    with pytest.raises(TypeError) as ours:
        to_wire_value(frame)
    with pytest.raises(TypeError) as theirs:
        sklearn_cluster.MiniBatchKMeans(n_clusters=1, n_init=1).fit(frame)
    assert str(ours.value) == str(theirs.value)
    # All non-string names are fine (sent without names, as scikit-learn ignores them).
    assert isinstance(to_wire_value(pd.DataFrame(np.ones((2, 2)), columns=[3, 4])), np.ndarray)
