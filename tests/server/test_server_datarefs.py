"""Data references (SPEC 3.3): inputs memory-mapped from the data directory, outputs to files."""

from __future__ import annotations

import os

import numpy as np
import pytest
from server_testdata import small_X
from server_wire import RemoteErr

from protocol import DataRef


@pytest.fixture
def subdir(data_dir, request):
    """A directory of this test's own inside the shared server's data directory."""
    path = data_dir / request.node.name.replace("[", "_").replace("]", "_")
    path.mkdir()
    return path


def rel(path, data_dir) -> str:
    return path.relative_to(data_dir).as_posix()


def test_fit_from_a_dataref_equals_fit_from_the_array(wire, data_dir, subdir):
    X = small_X(3, n=2000)
    np.save(subdir / "X.npy", X)
    wire.init("wire", n_clusters=4, random_state=0)
    wire.init("file", n_clusters=4, random_state=0)
    wire.call("wire", "fit", X=X)
    wire.call("file", "fit", X=DataRef(rel(subdir / "X.npy", data_dir)))
    np.testing.assert_array_equal(
        wire.get("wire", "cluster_centers_"), wire.get("file", "cluster_centers_")
    )
    np.testing.assert_array_equal(wire.get("wire", "labels_"), wire.get("file", "labels_"))


def test_labels_and_predictions_to_out_files(wire, data_dir, subdir):
    X = small_X(4, n=3000)
    np.save(subdir / "X.npy", X)
    xref = DataRef(rel(subdir / "X.npy", data_dir))
    labels_ref = DataRef(rel(subdir / "out" / "labels.npy", data_dir))
    wire.init("km", n_clusters=3, random_state=0)
    result = wire.ok("call", id="km", method="fit", args={"X": xref}, out={"labels_": labels_ref})
    assert result is None  # fit returns "self"
    on_disk = np.load(subdir / "out" / "labels.npy")
    # labels_ now lives in the file: get answers with the reference.
    assert wire.get("km", "labels_") == labels_ref
    wire.init("ref", n_clusters=3, random_state=0)
    wire.call("ref", "fit", X=X)
    np.testing.assert_array_equal(on_disk, wire.get("ref", "labels_"))

    pred_ref = DataRef(rel(subdir / "pred.npy", data_dir))
    got = wire.ok("call", id="km", method="predict", args={"X": xref}, out={"result": pred_ref})
    assert got == pred_ref
    np.testing.assert_array_equal(np.load(subdir / "pred.npy"), on_disk)

    dist_ref = DataRef(rel(subdir / "dist.npy", data_dir))
    got = wire.ok(
        "call", id="km", method="transform", args={"X": X[:100]}, out={"result": dist_ref}
    )
    assert got == dist_ref
    np.testing.assert_allclose(
        np.load(subdir / "dist.npy"), wire.call("km", "transform", X=X[:100])
    )

    fp_ref = DataRef(rel(subdir / "fp.npy", data_dir))
    wire.init("fp", n_clusters=3, random_state=0)
    got = wire.ok("call", id="fp", method="fit_predict", args={"X": xref}, out={"result": fp_ref})
    assert got == fp_ref
    np.testing.assert_array_equal(np.load(subdir / "fp.npy"), on_disk)

    get_ref = DataRef(rel(subdir / "get.npy", data_dir))
    assert wire.ok("get", id="ref", attr="labels_", out=get_ref) == get_ref
    np.testing.assert_array_equal(np.load(subdir / "get.npy"), on_disk)


def refused(wire, fn, match):
    with pytest.raises(RemoteErr) as info:
        fn()
    assert info.value.type == "DataRefError", info.value
    assert "ValueError" in info.value.bases
    assert match in info.value.message, info.value.message


def test_refused_input_paths(wire, data_dir, subdir, tmp_path_factory):
    wire.init("km", n_clusters=2)
    outside = tmp_path_factory.mktemp("outside")
    np.save(outside / "secret.npy", small_X())
    os.symlink(outside / "secret.npy", subdir / "link.npy")
    os.symlink(outside, subdir / "linkdir")
    np.save(subdir / "fortran.npy", np.asfortranarray(small_X()))
    np.save(subdir / "complex.npy", small_X().astype(np.complex128))
    (subdir / "data.txt").write_text("1 2\n3 4\n")
    (subdir / "garbage.npy").write_bytes(b"not an npy file at all")
    np.save(subdir / "ok.npy", small_X())
    base = rel(subdir, data_dir)

    def fit(path):
        return lambda: wire.call("km", "fit", X=DataRef(path))

    refused(wire, fit(str(subdir / "ok.npy")), "absolute")
    refused(wire, fit(f"{base}/../{base}/ok.npy"), "..")
    refused(wire, fit("../secret.npy"), "..")
    refused(wire, fit(f"{base}/link.npy"), "leaves the data directory")
    refused(wire, fit(f"{base}/linkdir/secret.npy"), "leaves the data directory")
    refused(wire, fit(f"{base}/data.txt"), ".npy")
    refused(wire, fit(f"{base}/fortran.npy"), "Fortran")
    refused(wire, fit(f"{base}/complex.npy"), "dtype")
    refused(wire, fit(f"{base}/missing.npy"), "no such file")
    refused(wire, fit(f"{base}/garbage.npy"), "not a valid .npy")
    wire.call("km", "fit", X=DataRef(f"{base}/ok.npy"))  # and the good one works


def test_refused_output_paths(wire, data_dir, subdir, tmp_path_factory):
    X = small_X()
    np.save(subdir / "exists.npy", np.zeros(3))
    outside = tmp_path_factory.mktemp("outside-out")
    os.symlink(outside, subdir / "linkdir")
    base = rel(subdir, data_dir)
    wire.init("km", n_clusters=2, random_state=0)
    wire.call("km", "fit", X=X)

    def predict_to(path):
        return lambda: wire.ok(
            "call", id="km", method="predict", args={"X": X}, out={"result": DataRef(path)}
        )

    refused(wire, predict_to(f"{base}/exists.npy"), "already exists")
    refused(wire, predict_to(f"{base}/../escape.npy"), "..")
    refused(wire, predict_to("/tmp/abs.npy"), "absolute")
    refused(wire, predict_to(f"{base}/linkdir/x.npy"), "leaves the data directory")
    refused(wire, predict_to(f"{base}/labels.txt"), ".npy")
    assert not (outside / "x.npy").exists()
    np.testing.assert_array_equal(np.load(subdir / "exists.npy"), np.zeros(3))
    # An out name the method cannot produce is an argument error.
    with pytest.raises(RemoteErr) as info:
        wire.ok("call", id="km", method="score", args={"X": X}, out={"result": DataRef("s.npy")})
    assert info.value.type == "InvalidArguments"


def test_server_without_data_dir_refuses_refs(launch):
    from server_wire import Wire

    srv = launch(data_dir=None)
    with Wire(srv.endpoint, srv.token) as w:
        w.init("km")
        with pytest.raises(RemoteErr) as info:
            w.call("km", "fit", X=DataRef("X.npy"))
        assert info.value.type == "DataRefError" and "--data-dir" in info.value.message


def test_a_directory_swapped_for_a_link_after_the_check_is_caught(tmp_path):
    # The race the second check closes: the name is checked, then a directory
    # on its way is replaced by a link to elsewhere before the file is opened.
    # Replayed step by step on a real directory, with the real DataDir.
    from bridge_server.datarefs import DataDir
    from bridge_server.errors import DataRefError

    root, outside = tmp_path / "data", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    np.save(root / "d" / "x.npy", small_X())
    np.save(outside / "x.npy", small_X() + 100)
    data = DataDir(root)
    ref = DataRef("d/x.npy")
    checked = data._path(ref)  # the check passes: d is a plain directory
    os.rename(root / "d", root / "d-old")
    os.symlink(outside, root / "d")  # the swap
    fd = os.open(checked, os.O_RDONLY)  # what a check-then-open would get: the outside file
    try:
        with pytest.raises(DataRefError, match="leaves the data directory"):
            data._check_opened(fd, ref)
    finally:
        os.close(fd)
    # Swapped back before the second check: the open file is still not the named one.
    os.unlink(root / "d")
    os.rename(root / "d-old", root / "d")
    fd = os.open(outside / "x.npy", os.O_RDONLY)
    try:
        with pytest.raises(DataRefError, match="leaves the data directory"):
            data._check_opened(fd, ref)
    finally:
        os.close(fd)
    # And the honest case loads, from the file descriptor it checked.
    loaded = data.load(ref)
    np.testing.assert_array_equal(loaded, small_X())
    assert not loaded.flags.writeable


def test_a_failed_call_leaves_no_output_file_behind(tmp_path):
    # finish() writes attribute outputs the core did not allocate (labels_ of a
    # fit); if a later output then fails, discard() must remove those too.
    from bridge_server.datarefs import DataDir, OutputSet
    from bridge_server.errors import DataRefError

    data = DataDir(tmp_path)
    outputs = OutputSet(
        data, {"labels_": DataRef("labels.npy"), "result": DataRef("result.npy")}, ("predict",)
    )
    outputs.check()
    with pytest.raises(DataRefError, match="not an array"):
        outputs.finish(3.5, {"labels_": np.arange(10, dtype=np.int32)})
    assert (tmp_path / "labels.npy").exists()  # written before the result failed
    outputs.discard()
    assert not (tmp_path / "labels.npy").exists()
    assert not (tmp_path / "result.npy").exists()


def test_the_server_forgets_outputs_nothing_holds(tmp_path):
    # A long-lived server creates outputs call after call; it must remember an
    # output only while an array of it is in use (to answer `get` with a
    # reference), not for ever.
    import gc

    from bridge_server.datarefs import DataDir

    data = DataDir(tmp_path)
    kept = data.create_output(DataRef("kept.npy"), (5,), np.dtype(np.int32))
    for i in range(50):
        data.write_output(DataRef(f"out-{i}.npy"), np.arange(5, dtype=np.int32))
    gc.collect()
    assert len(data._created) == 1
    assert data.ref_for(kept) == DataRef("kept.npy")
    # The files themselves stay: forgetting is not deleting.
    assert len(list(tmp_path.glob("out-*.npy"))) == 50
    del kept
    gc.collect()
    assert len(data._created) == 0
