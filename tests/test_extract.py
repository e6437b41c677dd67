"""The extract job end to end on real slides (shared/data) and synthetic CAMELYON-like ones.

No mocks: real TIFF/SVS/DICOM files, real Zarr stores, a real dask LocalCluster, a real
``kill -9`` of the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.mlcamsr import main
from mlcamsr import open_store
from mlcamsr.errors import InputError, StoreError
from mlcamsr.extract import (
    TASKS_PREFIX,
    check_options,
    done_records,
    extract,
    make_tasks,
    open_or_create_store,
    plan_rows,
    run_task,
)
from mlcamsr.shards import layout_of
from mlcamsr.store import DEFAULT_ZSTD_LEVEL, LOCK_NAME

REPO = Path(__file__).resolve().parents[1]
TABLE_COLUMNS = [
    "slide", "x", "y", "label", "status", "reason", "index", "tissue_frac", "stain_frac",
    "rgb_mean_r", "rgb_mean_g", "rgb_mean_b", "align_psnr_20x", "align_psnr_10x",
    "src_40x", "src_20x", "src_10x", "tumor_frac", "split",
]


def _cli(*args: str):
    return CliRunner().invoke(main, ["extract", *args], catch_exceptions=False)


def _assert_same_store(a: Path, b: Path, *, ignore=()):
    sa, sb = open_store(a), open_store(b)
    assert sa.members == sb.members
    for m in sa.members:
        np.testing.assert_array_equal(sa[m][:], sb[m][:])
    pd.testing.assert_frame_equal(sa.table.drop(columns=list(ignore)), sb.table.drop(columns=list(ignore)))


def _write_csv(path: Path, rows: list[str], header: str = "slide,x,y") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# ----------------------------------------------------------------------------- synthetic


def test_small_store_layout_table_and_attrs(small_store, synth_dir):
    s = open_store(small_store)
    coords = pd.read_csv(synth_dir / "coords.csv")
    t = s.table
    assert s.members == ["40x", "20x", "10x"]
    assert [s[m].shape for m in s.members] == [(len(coords), n, n, 3) for n in (256, 128, 64)]
    assert list(t.columns) == TABLE_COLUMNS and len(t) == len(coords)
    assert (t.x.to_numpy() == coords.x.to_numpy()).all()
    kept = t[t.status == "kept"]
    assert len(kept) >= len(t) - 2 and (kept["index"] == kept.index).all()
    for i in kept.index[:3]:
        assert s["40x"][i].any()
    for i in t.index[t.status != "kept"]:
        assert t.at[i, "index"] == -1 and not s["40x"][i].any() and t.at[i, "reason"]
    a = s.attrs
    assert a["params"]["size"] == 256 and a["complete"] is True
    assert {m["name"]: m["mpp"] for m in a["members"]} == pytest.approx(
        {"40x": 0.243, "20x": 0.486, "10x": 0.972})
    for meta in a["slides"].values():
        assert meta["mpp"] == pytest.approx([0.243, 0.243]) and len(meta["fingerprint"]["digest"]) == 64
        assert "sha256" not in meta  # the full hash is opt-in (--hash full)
    # synthetic levels are the real pyramid: every kept patch aligns well
    assert kept.align_psnr_20x.min() > 28 and kept.align_psnr_10x.min() > 27
    assert set(kept.src_40x) == {"native:L0"}
    assert {v.split(":")[0] for v in kept.src_20x} == {"native"}


def test_odd_levels_are_native_and_aligned(tmp_path):
    from mlcamsr.synth import synth_slides

    d = tmp_path / "odd"
    synth_slides(d, n_slides=1, size=(2048, 1536), seed=1, odd_levels=True, n_coords=5)
    res = extract(d, d / "coords.csv", tmp_path / "o.zarr", size=256, workers=0, progress=False)
    assert res.n_failed == 0
    s = open_store(tmp_path / "o.zarr")
    t = s.table[s.table.status == "kept"]
    assert len(t) >= 3
    levels = next(iter(s.attrs["slides"].values()))["levels"]
    assert levels[1][0] == 2048 // 2 + 1  # 1025 px: downsample 1.998
    # odd downsample: native level, resampled sub-pixel to keep the square exact
    assert set(t.src_20x) == {"native:L1:bicubic-aa"}
    assert t.align_psnr_20x.min() > 28 and t.align_psnr_10x.min() > 27


def test_shifted_level_gets_a_low_alignment_score(tmp_path):
    from mlcamsr.synth import build_levels, render_slide, write_pyramid_tiff

    d = tmp_path / "shift"
    d.mkdir()
    slide = render_slide((2048, 2048), seed=3, index=0, lesions=False)
    levels = build_levels(slide.image)
    write_pyramid_tiff(d / "good.tif", levels, mpp=0.243)
    shifted = list(levels)
    shifted[1] = np.roll(levels[1], (2, 2), axis=(0, 1))  # level 1 off by 2 px (4 px at level 0)
    write_pyramid_tiff(d / "bad.tif", shifted, mpp=0.243)
    centres = [(700, 700), (1024, 1024), (700, 1400)]
    _write_csv(d / "c.csv", [f"{n},{x},{y}" for n in ("good", "bad") for x, y in centres])
    extract(d, d / "c.csv", tmp_path / "s.zarr", size=512, workers=0, progress=False,
            min_tissue=0.0, rgb_tol=1.0)
    t = open_store(tmp_path / "s.zarr").table
    good, bad = t[t.slide == "good"], t[t.slide == "bad"]
    assert (good.status == "kept").all() and good.align_psnr_20x.min() > 30
    assert (bad.status == "rejected").all() and bad.align_psnr_20x.max() < 22
    assert bad.reason.str.startswith("alignment 20x").all()
    assert (bad.align_psnr_10x - good.align_psnr_10x.to_numpy()).abs().max() < 1e-9  # only L1 moved


def test_dask_two_worker_processes_equal_serial(small_store, synth_dir, tmp_path):
    out = tmp_path / "dask.zarr"
    res = extract(synth_dir, synth_dir / "coords.csv", out, size=256, workers=2, shard_rows=4,
                  processes=True, progress=False)
    assert res.tasks_run == -(-res.n_rows // 4)
    # shard_rows is a parameter of the layout, not of the content: arrays and table match
    _assert_same_store(small_store, out)


def test_thread_workers_equal_serial(small_store, synth_dir, tmp_path):
    out = tmp_path / "threads.zarr"
    extract(synth_dir, synth_dir / "coords.csv", out, size=256, workers=2, shard_rows=2,
            progress=False)
    _assert_same_store(small_store, out)


def test_block_cache_does_not_change_pixels(small_store, synth_dir, tmp_path):
    out = tmp_path / "nocache.zarr"
    extract(synth_dir, synth_dir / "coords.csv", out, size=256, workers=0, cache_mb=0,
            progress=False)
    _assert_same_store(small_store, out)


def test_resume_after_kill_equals_clean_run(synth_dir, tmp_path):
    args = ["--slides", str(synth_dir), "--coords", str(synth_dir / "coords.csv"),
            "--size", "512", "--workers", "0", "--shard-rows", "1", "--quiet"]
    clean, killed = tmp_path / "clean.zarr", tmp_path / "killed.zarr"
    cmd = [sys.executable, "-c", "from cli.mlcamsr import main; main()"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([*cmd, "extract", *args, "--out", str(killed)], cwd=REPO, env=env)
    tasks = killed / TASKS_PREFIX
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if tasks.is_dir() and len(list(tasks.glob("*.json"))) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(tasks.glob("*.json")))
    assert 3 <= n_done < 24 and not (killed / "table/c/0").exists()
    assert (killed / LOCK_NAME).exists()  # left behind by the dead run: stale, taken over
    r = subprocess.run([*cmd, "extract", *args, "--out", str(killed)], cwd=REPO, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{n_done} shard(s) already done" in r.stdout
    r = subprocess.run([*cmd, "extract", *args, "--out", str(clean)], cwd=REPO, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _assert_same_store(clean, killed)


def test_second_concurrent_run_is_refused(small_store, synth_dir):
    lock = small_store / LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getpid(), "host": __import__("socket").gethostname()}))
    try:
        r = _cli("--slides", str(synth_dir), "--coords", str(synth_dir / "coords.csv"),
                 "--out", str(small_store), "--size", "256", "--workers", "0")
        assert r.exit_code == 2 and "in use by another run" in r.output
    finally:
        lock.unlink()


def test_rerun_same_params_is_a_no_op_and_other_params_refused(small_store, synth_dir):
    before = (small_store / "table/c/0").stat().st_mtime_ns
    base = ["--slides", str(synth_dir), "--coords", str(synth_dir / "coords.csv"),
            "--out", str(small_store), "--workers", "0", "--quiet"]
    r = _cli(*base, "--size", "256")
    assert r.exit_code == 0, r.output
    r = _cli(*base, "--size", "512")
    assert r.exit_code == 2 and "other parameters (size: 256 -> 512)" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert (small_store / "table/c/0").stat().st_mtime_ns == before
    assert open_store(small_store).attrs["params"]["size"] == 256


def test_inner_chunks_equal_whole_patch_store_and_are_a_parameter(small_store, synth_dir, tmp_path):
    out = tmp_path / "inner.zarr"
    extract(synth_dir, synth_dir / "coords.csv", out, size=256, workers=2, shard_rows=4, chunk=64,
            progress=False)
    # the inner chunk side is a parameter of the layout, not of the content
    _assert_same_store(small_store, out)
    s, whole = open_store(out), open_store(small_store)
    assert [s[m].chunks for m in s.members] == [(1, 64, 64, 3)] * 3  # 256, 128, 64 px members
    assert [s[m].shards for m in s.members] == [(4, n, n, 3) for n in (256, 128, 64)]
    assert [m["chunk"] for m in s.attrs["members"]] == [64, 64, 64]
    assert s.attrs["params"]["chunk"] == 64
    # default for a 256-px finest member: one chunk per patch
    assert whole.attrs["params"]["chunk"] == 256
    assert [whole[m].chunks[1] for m in whole.members] == [256, 128, 64]

    base = ["--slides", str(synth_dir), "--coords", str(synth_dir / "coords.csv"), "--out", str(out),
            "--size", "256", "--shard-rows", "4", "--workers", "0", "--quiet"]
    before = (out / "table/c/0").stat().st_mtime_ns
    r = _cli(*base, "--chunk", "64")
    assert r.exit_code == 0, r.output
    r = _cli(*base, "--chunk", "128")
    assert r.exit_code == 2 and "other parameters (chunk: 64 -> 128)" in r.output, r.output
    r = _cli(*base)  # the default (whole 256-px patches) is another layout too
    assert r.exit_code == 2 and "chunk: 64 -> 256" in r.output, r.output
    assert (out / "table/c/0").stat().st_mtime_ns == before
    r = CliRunner().invoke(main, ["info", str(out)])
    assert r.exit_code == 0 and "chunk   64 px" in r.output, r.output
    r = CliRunner().invoke(main, ["info", str(out), "--json"])
    assert [m["chunk"] for m in json.loads(r.output)["members"]] == [64, 64, 64]


def test_default_inner_chunk_is_256_px_for_larger_patches(synth_dir, tmp_path):
    coords = _write_csv(tmp_path / "c.csv", ["slide_000.tif,2048,1536"])
    res = extract(synth_dir, coords, tmp_path / "d.zarr", size=512, workers=0, progress=False,
                  min_tissue=0.0, rgb_tol=1.0, min_align_psnr=0.0, hash_slides=False)
    s = open_store(res.store)
    assert s.attrs["params"]["chunk"] == 256
    # each member: min(256, its size); shards stay whole patches
    assert [s[m].chunks[1] for m in s.members] == [256, 256, 128]
    assert [s[m].shards[1] for m in s.members] == [512, 256, 128]
    with pytest.raises(InputError, match="--chunk 8"):
        extract(synth_dir, coords, tmp_path / "e.zarr", size=512, chunk=8, workers=0, progress=False)
    r = _cli("--slides", str(synth_dir), "--coords", str(coords), "--out", str(tmp_path / "f.zarr"),
             "--chunk", "8")
    assert r.exit_code == 2 and "--chunk" in r.output
    assert not (tmp_path / "e.zarr").exists() and not (tmp_path / "f.zarr").exists()


def test_zstd_level_is_minus_one_for_a_new_store_and_a_store_keeps_its_own(synth_dir, tmp_path):
    """New stores get DEFAULT_ZSTD_LEVEL (-1); rerunning the command that made a store with
    level 1 (the earlier default) without --zstd-level resumes it at level 1; an explicit
    other level is refused like any other parameter."""
    base = ["--slides", str(synth_dir), "--coords", str(synth_dir / "coords.csv"), "--size", "128",
            "--workers", "0", "--quiet"]
    new, old = tmp_path / "new.zarr", tmp_path / "old.zarr"
    assert _cli(*base, "--out", str(new)).exit_code == 0
    s = open_store(new)
    assert DEFAULT_ZSTD_LEVEL == -1 and s.attrs["params"]["zstd_level"] == -1
    assert {layout_of(s[m]).level for m in s.members} == {-1}
    assert _cli(*base, "--out", str(old), "--zstd-level", "1").exit_code == 0
    shutil.rmtree(old / "40x" / "c")  # damage: the rerun must repair it, at the store's level
    r = _cli(*base, "--out", str(old))
    assert r.exit_code == 0, r.output
    s = open_store(old)
    assert s.attrs["params"]["zstd_level"] == 1 and {layout_of(s[m]).level for m in s.members} == {1}
    _assert_same_store(new, old)  # same pixels and table, other bytes
    r = _cli(*base, "--out", str(old), "--zstd-level", "3")
    assert r.exit_code == 2 and "other parameters (zstd_level: 1 -> 3)" in r.output, r.output
    before = (old / "table/c/0").stat().st_mtime_ns
    r = _cli(*base, "--out", str(old), "--overwrite")  # same parameters: resumed, not replaced
    assert r.exit_code == 0 and (old / "table/c/0").stat().st_mtime_ns == before, r.output
    r = CliRunner().invoke(main, ["info", str(old)])
    assert r.exit_code == 0 and "zstd  1" in r.output, r.output
    # a recorded level that is not a whole number: the usual one-line refusal, no traceback
    s = open_store(old, "r+")
    s.update_attrs(params={**s.attrs["params"], "zstd_level": None})
    r = _cli(*base, "--out", str(old))
    assert r.exit_code == 2 and "zstd_level: None -> -1" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1


def test_overwrite_replaces_a_store(synth_dir, tmp_path):
    out = tmp_path / "o.zarr"
    base = ["--slides", str(synth_dir), "--coords", str(synth_dir / "coords.csv"),
            "--out", str(out), "--workers", "0", "--quiet"]
    assert _cli(*base, "--size", "128").exit_code == 0
    r = _cli(*base, "--size", "64", "--scales", "1,2", "--overwrite")
    assert r.exit_code == 0, r.output
    s = open_store(out)
    assert s.members == ["40x", "20x"] and s["40x"].shape[1] == 64


def test_annotations_label_rows(synth_dir, tmp_path):
    res = extract(synth_dir, synth_dir / "coords.csv", tmp_path / "a.zarr", size=128, workers=0,
                  annotations=synth_dir, progress=False, hash_slides=False)
    t = open_store(res.store).table
    coords = pd.read_csv(synth_dir / "coords.csv")
    assert set(t.label) <= {"tumor", "normal"} and t.tumor_frac.notna().all()
    assert ((t.label == "tumor") == (t.tumor_frac > 0)).all()
    assert (t.label == coords.label).mean() > 0.8  # synth labels by the centre; we by the square


def test_info_json(small_store):
    r = CliRunner().invoke(main, ["info", str(small_store), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["counts"]["rows"] == d["counts"]["kept"] + d["counts"]["rejected"] + d["counts"]["failed"]
    assert [m["name"] for m in d["members"]] == ["40x", "20x", "10x"] and d["size_bytes"] > 0
    r = CliRunner().invoke(main, ["info", str(small_store)])
    assert r.exit_code == 0 and "align_psnr_20x_min" in r.output


# ----------------------------------------------------------------------------- real slides


def test_cmu1_20x_native_and_coarser_resampled(shared_data, tmp_path):
    wsi = shared_data / "wsi"
    c = _write_csv(tmp_path / "c.csv", ["CMU-1-Small-Region.svs,1110,1480", "CMU-1-Small-Region.svs,1100,1000"])
    res = extract(wsi, c, tmp_path / "cmu.zarr", size=512, base_mpp=0.499, base_mag=20,
                  workers=0, progress=False, min_tissue=0.3, hash_slides="full")
    s = open_store(res.store)
    assert s.members == ["20x", "10x", "5x"]
    t = s.table
    assert res.n_failed == 0 and (t.status == "kept").all(), t.reason.tolist()
    assert set(t.src_20x) == {"native:L0"}
    assert set(t.src_10x) == set(t.src_5x) == {"resampled:L0:bicubic-aa"}
    meta = s.attrs["slides"]["CMU-1-Small-Region.svs"]
    assert meta["mpp"] == pytest.approx([0.499, 0.499]) and meta["sha256"].startswith("ed92d5a9")
    # default members (40x at 0.243) would need upsampling: refused, never faked
    with pytest.raises(InputError, match="needs upsampling"):
        extract(wsi, c, tmp_path / "up.zarr", size=512, workers=0, progress=False)
    assert not (tmp_path / "up.zarr" / "zarr.json").exists()


def test_tcga_without_mpp_refused_with_mpp_column_works(shared_data, tmp_path):
    wsi = shared_data / "wsi"
    c = _write_csv(tmp_path / "c.csv", ["TCGA-CR-7395-01A-01-TS1,2200,1800"])
    r = _cli("--slides", str(wsi), "--coords", str(c), "--out", str(tmp_path / "t.zarr"),
             "--size", "512", "--workers", "0")
    assert r.exit_code == 2 and "no mpp" in r.output and "TCGA-CR-7395" in r.output
    c2 = _write_csv(tmp_path / "c2.csv", ["TCGA-CR-7395-01A-01-TS1,2200,1800,0.243"], "slide,x,y,mpp")
    res = extract(wsi, c2, tmp_path / "t2.zarr", size=512, workers=0, progress=False)
    s = open_store(res.store)
    meta = s.attrs["slides"]["TCGA-CR-7395-01A-01-TS1"]
    assert meta["mpp_source"] == "coords:mpp" and len(meta["levels"]) == 2
    t = s.table
    assert t.src_20x[0].startswith("native:L1") and t.src_10x[0] == "resampled:L1:bicubic-aa"
    assert t.mpp[0] == pytest.approx(0.243)


def test_dicom_geometry_and_mpp(shared_data, tmp_path):
    wsi = shared_data / "wsi"
    c = _write_csv(tmp_path / "c.csv", ["dicom-CMU-1-Small-Region,1110,1480"])
    # colours are wrong in openslide (SOURCES.md): geometry and mpp only
    res = extract(wsi, c, tmp_path / "d.zarr", size=512, base_mpp=0.499, base_mag=20, workers=0,
                  progress=False, min_tissue=0, rgb_tol=1, min_align_psnr=0, min_stain=0, backend="openslide")
    s = open_store(res.store)
    meta = s.attrs["slides"]["dicom-CMU-1-Small-Region"]
    assert meta["mpp"] == pytest.approx([0.499, 0.499]) and meta["levels"][:2] == [[2220, 2967], [1110, 1483]]
    t = s.table
    assert t.src_20x[0] == "native:L0" and t.src_10x[0].startswith("native:L1")


# ----------------------------------------------------------------------------- bad input


@pytest.fixture()
def slides_copy(synth_dir, tmp_path):
    d = tmp_path / "slides"
    d.mkdir()
    for f in synth_dir.glob("slide_*.tif"):
        os.link(f, d / f.name) if hasattr(os, "link") else shutil.copy(f, d / f.name)
    return d


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (["slide_000.tif,1000,1000", "missing_slide,1000,1000"], "not found in"),
        (["../slide_000.tif,1000,1000"], r"contains '\.\.'"),
        (["/etc/passwd,1000,1000"], "absolute path"),
        (["slide_000.tif,abc,1000"], "x='abc' is not a finite number"),
        (["slide_000.tif,1000,"], "y='' is not a finite number"),
        (["slide_000.tif,1000,1000", "slide_000.tif,1000,1000"], "same patch"),
    ],
)
def test_bad_rows_exit_2_one_line(slides_copy, tmp_path, rows, match):
    c = _write_csv(tmp_path / "c.csv", rows)
    r = _cli("--slides", str(slides_copy), "--coords", str(c), "--out", str(tmp_path / "s.zarr"),
             "--workers", "0")
    assert r.exit_code == 2
    assert r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(match, r.output), r.output
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--slides", "NOWHERE"], "slides folder NOWHERE not found"),
        (["--coords", "NOWHERE.csv"], "coords file NOWHERE.csv not found"),
        (["--size", "1000", "--scales", "1,2,3"], "--size 1000 is not divisible by scale"),
        (["--coords", "EMPTY"], "is empty"),
        (["--coords", "WRONG"], "lacks column"),
    ],
)
def test_bad_options_exit_2(slides_copy, tmp_path, args, match):
    good = _write_csv(tmp_path / "c.csv", ["slide_000.tif,1000,1000"])
    (tmp_path / "EMPTY").write_text("")
    _write_csv(tmp_path / "WRONG", ["a,1,2"], "name,x,y")
    opts = {"--slides": str(slides_copy), "--coords": str(good)}
    extra: list[str] = []
    it = iter(args)
    for k in it:
        v = next(it)
        if k in opts:
            opts[k] = str(tmp_path / v) if v in ("EMPTY", "WRONG") else v
        else:
            extra += [k, v]
    r = _cli(*[x for kv in opts.items() for x in kv], *extra, "--out", str(tmp_path / "s.zarr"),
             "--workers", "0")
    assert r.exit_code == 2 and match in r.output and len(r.output.strip().splitlines()) == 1


def test_broken_slides_fail_their_rows_others_finish(slides_copy, synth_dir, tmp_path):
    (slides_copy / "empty.tif").write_bytes(b"")
    (slides_copy / "notaslide.tif").write_text("hello, I am a text file\n")
    data = (slides_copy / "slide_001.tif").read_bytes()
    (slides_copy / "truncated.tif").write_bytes(data[: len(data) // 3])
    c = _write_csv(tmp_path / "c.csv", [
        "slide_000.tif,1500,1500", "empty.tif,1000,1000", "notaslide,1000,1000",
        "truncated.tif,1000,1000", "slide_000.tif,100,1500", "slide_000.tif,2000,1200",
    ])
    r = _cli("--slides", str(slides_copy), "--coords", str(c), "--out", str(tmp_path / "s.zarr"),
             "--workers", "0", "--size", "256", "--min-tissue", "0", "--rgb-tol", "1")
    assert r.exit_code == 1, r.output
    t = open_store(tmp_path / "s.zarr").table
    assert list(t.status) == ["kept", "failed", "failed", "failed", "failed", "kept"]
    assert "empty" in t.reason[1] and "leaves the slide" in t.reason[4]
    for i in (1, 2, 3, 4):
        assert f"row {i}" in r.output
    assert "4 failed" in r.output


def test_square_leaving_slide_is_a_failed_row(slides_copy, tmp_path):
    c = _write_csv(tmp_path / "c.csv", ["slide_000.tif,1500,1500", "slide_000.tif,4000,3000"])
    res = extract(slides_copy, c, tmp_path / "s.zarr", size=256, workers=0, progress=False)
    assert res.exit_code == 1 and res.failures[0][:2] == ("slide_000.tif", 1)
    assert "leaves the slide" in res.failures[0][2]


def test_store_errors_are_store_errors(tmp_path, slides_copy):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("mine")
    c = _write_csv(tmp_path / "c.csv", ["slide_000.tif,1500,1500"])
    with pytest.raises(StoreError, match="not a store"):
        extract(slides_copy, c, tmp_path / "junk", size=64, workers=0, progress=False)
    assert (tmp_path / "junk" / "x.txt").read_text() == "mine"


def test_existing_dask_scheduler_and_file_url(small_store, synth_dir, tmp_path):
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        out = tmp_path / "sched.zarr"
        res = extract(synth_dir, synth_dir / "coords.csv", f"file://{out}", size=256,
                      scheduler=cluster.scheduler_address, progress=False)
    assert res.store == str(out)
    _assert_same_store(small_store, out)


def test_info_shows_split_summary(small_store, tmp_path):
    copy = tmp_path / "split.zarr"
    shutil.copytree(small_store, copy)
    s = open_store(copy, "r+")
    t = s.table
    t["split"] = ["train" if i % 6 else "test" for i in range(len(t))]
    s.write_table(t)
    r = CliRunner().invoke(main, ["info", str(copy), "--json"])
    d = json.loads(r.output)
    assert d["split"] == {"test": int((t.split == "test").sum()), "train": int((t.split == "train").sum())}


def test_dask_extract_leaves_the_callers_environment_alone(synth_dir, tmp_path):
    before = dict(os.environ)
    extract(synth_dir, synth_dir / "coords.csv", tmp_path / "env.zarr", size=256, workers=2,
            shard_rows=4, progress=False)
    assert dict(os.environ) == before


def test_info_says_when_the_extract_is_unfinished(small_store, tmp_path):
    """An interrupted store must not read as an empty finished one ("rows: 0")."""
    copy = tmp_path / "unfinished.zarr"
    shutil.copytree(small_store, copy)
    s = open_store(copy, "a")
    s.update_attrs(complete=False)
    (copy / "table/c/0").unlink()
    r = CliRunner().invoke(main, ["info", str(copy)])
    assert r.exit_code == 1, r.output  # not healthy: exit 1 (issue 9)
    assert "UNFINISHED" in r.output and "mlcamsr extract" in r.output
    r = CliRunner().invoke(main, ["info", str(small_store)])
    assert "UNFINISHED" not in r.output


def test_synth_centres_give_native_reads_at_every_member(small_store):
    kept = open_store(small_store).table.query("status == 'kept'")
    assert len(kept)
    assert (kept["src_20x"] == "native:L1").all() and (kept["src_10x"] == "native:L2").all()


# ----------------------------------------------------------------------------- stages alone


def test_stages_plan_then_one_shard_then_resume_records(slides_copy, tmp_path):
    """plan_rows writes nothing and fails rows up front; one run_task's record is what
    done_records finds, and make_tasks then skips that shard."""
    (slides_copy / "broken.tif").write_bytes(b"not a slide at all")
    c = _write_csv(tmp_path / "c.csv", [
        "slide_000.tif,1500,1500", "slide_000.tif,4000,3000", "broken.tif,10,10", "slide_001.tif,1200,900",
    ])
    specs, th, chunk_px = check_options(
        size=256, base_mpp=0.243, base_mag=40, scales=(1, 2, 4), backend="auto", mpp=None, shard_rows=2,
        chunk=None, min_tissue=0.5, rgb_mean=(0.7204, 0.4298, 0.6379), rgb_tol=0.25, min_align_psnr=25.0,
    )
    assert [s.name for s in specs] == ["40x", "20x", "10x"] and chunk_px == 256
    plan = plan_rows(slides_copy, c, specs, backend="auto", mpp=None, allow_upsample=False, annotations=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "slides"]  # nothing written
    assert plan.n == 4 and set(plan.failed_slides) == {"broken.tif"}
    assert sorted(plan.pre_fail) == [1, 2] and "leaves the slide" in plan.pre_fail[1]
    out = str(tmp_path / "s.zarr")
    params = {"n_rows": plan.n, "shard_rows": 2, "zstd_level": 1, "chunk": chunk_px, "probe": 1}
    store, resumed = open_or_create_store(out, params, specs, overwrite=False)
    assert not resumed and store.members == ["40x", "20x", "10x"]
    kw = dict(store=out, shard_rows=2, backend="auto", allow_upsample=False, token="t", cache_mb=0)
    tasks = make_tasks(plan, specs, th, skip=(), **kw)
    assert [t["shard"] for t in tasks] == [0, 1]
    assert "geometry" not in tasks[0]["rows"][1] and tasks[0]["rows"][1]["fail"]
    records = run_task(tasks[0])
    assert [r["status"] for r in records][1] == "failed" and records[0]["status"] in ("kept", "rejected")
    assert done_records(store) == {0: records}
    assert [t["shard"] for t in make_tasks(plan, specs, th, skip=done_records(store), **kw)] == [1]
    again, resumed = open_or_create_store(out, params, specs, overwrite=False)
    assert resumed
    with pytest.raises(StoreError, match="other parameters"):
        open_or_create_store(out, {**params, "probe": 2}, specs, overwrite=False)


_SEEN_CALLBACKS: list[set[str]] = []


def _run_task_noting_worker(task):
    """``run_task`` that notes the periodic callbacks of the worker running it."""
    from distributed import get_worker

    import mlcamsr.extract as ex

    _SEEN_CALLBACKS.append(set(get_worker().periodic_callbacks))
    return ex._ORIGINAL_RUN_TASK(task)


def test_local_cluster_runs_without_the_stack_sampling_profiler(synth_dir, tmp_path, monkeypatch):
    """distributed's profiler samples every task thread's stack each 10 ms holding the GIL;
    extract's own local cluster turns it off (a --scheduler's workers are the user's)."""
    import mlcamsr.extract as ex

    monkeypatch.setattr(ex, "_ORIGINAL_RUN_TASK", ex.run_task, raising=False)
    monkeypatch.setattr(ex, "run_task", _run_task_noting_worker)
    _SEEN_CALLBACKS.clear()
    extract(synth_dir, synth_dir / "coords.csv", tmp_path / "p.zarr", size=256, workers=2,
            shard_rows=8, progress=False, hash_slides="none")
    assert _SEEN_CALLBACKS and all("profile" not in cbs and "heartbeat" in cbs for cbs in _SEEN_CALLBACKS)
