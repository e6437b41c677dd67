"""`mlcamsr pyramid`: values, names, provenance, kept rows only, resume, parallel, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlcamsr.resize import imresize
from tests.builders import build_store, real_patches, tree_digest


@pytest.fixture(scope="module")
def patches(shared_data: Path) -> tuple[np.ndarray, list[str]]:
    return real_patches(shared_data, 128)


@pytest.fixture()
def store(patches, tmp_path: Path) -> Path:
    images, slides = patches
    status = ["kept"] * len(slides)
    status[5] = "rejected"
    return build_store(tmp_path / "p.zarr", images, slides, status=status)


def run_cli(*args: str):
    from cli.mlcamsr import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_members_are_repeated_halvings_of_the_finest(store: Path, patches) -> None:
    from mlcamsr.pyramid import METHOD, pyramid
    from mlcamsr.store import open_store

    res = pyramid(store, workers=0, progress=False)
    assert res.members == ("20x_bicubic", "10x_bicubic", "5x_bicubic")
    assert res.sizes == (64, 32, 16)
    st = open_store(store)
    images = patches[0]
    fin = st["40x"]
    for i in (0, 7):
        cur = images[i]
        for k, name in enumerate(res.members, start=1):
            cur = imresize(cur, scale=0.5)  # each level from the previous, 8-bit
            np.testing.assert_array_equal(np.asarray(st[name][i]), cur)
            arr = st[name]
            ours = dict(arr.attrs["mlcamsr"])
            assert set(ours.pop("shards")) == {"0", "1", "2"}  # the records, folded at the end
            assert ours == {"source": "40x", "method": METHOD, "halvings": k}
            info = st.member_info(name)
            assert info["kind"] == "bicubic" and info["scale"] == 2**k and info["complete"]
            assert arr.chunks == (1,) + arr.shape[1:] and arr.shards[0] == fin.shards[0]
    # a rejected row is not written: its slot stays at the fill value
    assert not np.asarray(st["20x_bicubic"][5]).any()


def test_inner_chunked_store_gives_the_same_members_with_its_chunking(
    store: Path, patches, tmp_path: Path
) -> None:
    from mlcamsr.pyramid import pyramid
    from mlcamsr.store import open_store

    images, slides = patches
    status = ["kept"] * len(slides)
    status[5] = "rejected"
    inner = build_store(tmp_path / "inner.zarr", images, slides, status=status, chunk=32)
    pyramid(store, workers=0, progress=False)
    pyramid(inner, workers=2, progress=False)
    a, b = open_store(store), open_store(inner)
    check = open_store(tmp_path / "check.zarr", "w")  # zarr's own writes of the same pixels
    for name, chunk in (("20x_bicubic", 32), ("10x_bicubic", 32), ("5x_bicubic", 16)):
        np.testing.assert_array_equal(np.asarray(a[name][:]), np.asarray(b[name][:]))
        arr = b[name]
        assert arr.chunks == (1, chunk, chunk, 3)  # min(finest's 32, member size)
        assert arr.shards == (4,) + arr.shape[1:]  # shards stay whole patches
        assert b.member_info(name)["chunk"] == chunk
        # written by write_shard: byte for byte what zarr writes for the same rows
        ref = check.create_member(name, n=arr.shape[0], size=arr.shape[1], mpp=1, scale=1,
                                  mag=1, shard_rows=4, chunk=chunk)
        ref[:] = np.asarray(arr[:])
        for k in range(3):
            key = f"{name}/c/{k}/0/0/0"
            assert b.get_bytes(key) == check.get_bytes(key)
    again = pyramid(inner, workers=0, progress=False)
    assert again.shards_done == 0 and again.shards_skipped == 3


def test_names_follow_base_magnification(patches, tmp_path: Path) -> None:
    from mlcamsr.pyramid import pyramid

    images, slides = patches
    store = build_store(tmp_path / "m.zarr", images[:3], slides[:3], base_mag=20.0)
    res = pyramid(store, workers=0, progress=False, levels=2)
    assert res.members == ("10x_bicubic", "5x_bicubic")


def test_parallel_equals_serial_and_rerun_is_a_no_op(store: Path, tmp_path: Path) -> None:
    from mlcamsr.pyramid import pyramid

    other = tmp_path / "q.zarr"
    shutil.copytree(store, other)
    pyramid(store, workers=0, progress=False)
    res = pyramid(other, workers=2, progress=False)
    assert res.shards_done == 3
    for name in ("20x_bicubic", "10x_bicubic", "5x_bicubic"):
        a = sorted(p.name for p in (store / name).rglob("*") if p.is_file())
        assert a == sorted(p.name for p in (other / name).rglob("*") if p.is_file())
    from mlcamsr.store import open_store

    for name in ("20x_bicubic", "5x_bicubic"):
        np.testing.assert_array_equal(
            np.asarray(open_store(store)[name][:]), np.asarray(open_store(other)[name][:])
        )
    before = tree_digest(other)
    again = pyramid(other, workers=2, progress=False)
    assert again.shards_done == 0 and again.shards_skipped == 3
    assert tree_digest(other) == before


def test_resume_after_a_crash_equals_a_clean_run(store: Path, tmp_path: Path, monkeypatch) -> None:
    import mlcamsr.pyramid as pm
    from mlcamsr.store import open_store

    clean = tmp_path / "clean.zarr"
    shutil.copytree(store, clean)
    pm.pyramid(clean, workers=0, progress=False)

    real = pm._do_shard
    calls = {"n": 0}

    def dies_on_second_shard(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(pm, "_do_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        pm.pyramid(store, workers=0, progress=False)
    monkeypatch.setattr(pm, "_do_shard", real)
    from mlcamsr.dataset import TripletDataset
    from mlcamsr.errors import InputError

    with pytest.raises(InputError, match="unfinished"):
        TripletDataset(store, split="all", scale=4, patch=16, ref_source="bicubic")
    res = pm.pyramid(store, workers=0, progress=False)
    assert res.shards_skipped == 1 and res.shards_done == 2
    a, b = open_store(store), open_store(clean)
    for name in ("20x_bicubic", "10x_bicubic", "5x_bicubic"):
        np.testing.assert_array_equal(np.asarray(a[name][:]), np.asarray(b[name][:]))
        assert a.member_info(name) == b.member_info(name)


def test_cli_reports_and_other_parameters_need_overwrite(store: Path) -> None:
    r = run_cli("pyramid", str(store), "--workers", "0", "--no-progress")
    assert r.exit_code == 0 and "20x_bicubic (64 px)" in r.output
    before = tree_digest(store)
    r = run_cli("pyramid", str(store), "--workers", "0", "--no-progress", "--levels", "2")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--overwrite" in lines[0]
    assert tree_digest(store) == before
    r = run_cli("pyramid", str(store), "--workers", "0", "--no-progress", "--levels", "2", "--overwrite")
    assert r.exit_code == 0 and "5x_bicubic" not in r.output


@pytest.mark.parametrize("case", ["not-ours", "missing", "no-kept", "no-table", "odd-size"])
def test_bad_stores_get_one_line_exit_2_and_stay_untouched(case: str, patches, tmp_path: Path) -> None:
    import zarr

    images, slides = patches
    path = tmp_path / "bad.zarr"
    if case == "not-ours":
        zarr.open_group(path, mode="w", zarr_format=3)
        want = "not an MLCamSR store"
    elif case == "missing":
        want = "not found"
    elif case == "no-kept":
        build_store(path, images[:3], slides[:3], status=["rejected"] * 3)
        want = "no kept patches"
    elif case == "no-table":
        build_store(path, images[:3], slides[:3])
        (path / "table/c/0").unlink()
        want = "no patch table"
    else:
        build_store(path, images[:3, :100, :100], slides[:3], scales=(1,))
        want = "--levels 3"
    before = tree_digest(path) if path.exists() else None
    r = run_cli("pyramid", str(path), "--workers", "0", "--no-progress")
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and want in lines[0], r.output
    assert (tree_digest(path) if path.exists() else None) == before


def test_members_dropped_from_the_member_list_are_remade(store: Path) -> None:
    from mlcamsr.pyramid import pyramid
    from mlcamsr.store import open_store

    pyramid(store, workers=0, progress=False)
    st = open_store(store, mode="r+")
    st.update_attrs(members=[m for m in st.attrs["members"] if m["kind"] != "bicubic"])
    res = pyramid(store, workers=0, progress=False)
    assert res.shards_done == 3
    assert open_store(store).members[-3:] == ["20x_bicubic", "10x_bicubic", "5x_bicubic"]


def test_info_marks_an_unfinished_pyramid_member(tmp_path, small_store):
    """An interrupted pyramid leaves members the dataset refuses; info must say so too."""
    from cli.mlcamsr import main
    from mlcamsr.pyramid import pyramid as run_pyramid
    from mlcamsr.store import open_store

    copy = tmp_path / "p.zarr"
    shutil.copytree(small_store, copy)
    run_pyramid(copy, workers=0, progress=False)
    s = open_store(copy, "a")
    infos = s.attrs["members"]
    for m in infos:
        if m["name"] == "20x_bicubic":
            m["complete"] = False
    s.update_attrs(members=infos)
    r = CliRunner().invoke(main, ["info", str(copy)])
    assert r.exit_code == 1, r.output  # unfinished: not healthy (issue 9)
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("20x_bicubic"))
    assert "UNFINISHED" in line
    line = next(ln for ln in r.output.splitlines() if ln.strip().startswith("10x_bicubic"))
    assert "UNFINISHED" not in line
