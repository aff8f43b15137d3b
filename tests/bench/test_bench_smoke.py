"""The benchmark scripts still run (``--smoke``: tiny sizes, one repeat); no timings are checked."""

from __future__ import annotations

import pytest

from bridge_server import bench


def test_benchmarks_directory_is_found() -> None:
    where = bench.find_benchmarks()
    assert where is not None and (where / "harness.py").is_file()
    for script, _ in bench.SUITE.values():
        assert (where / script).is_file(), script


def test_every_benchmark_runs_in_smoke_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--smoke"]) == 0


def test_missing_directory_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "find_benchmarks", lambda: None)
    assert bench.main(["--smoke"]) == 2
    assert "source checkout" in capsys.readouterr().err
