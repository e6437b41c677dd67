"""The O(1) slide fingerprint and the resume check it powers (issue 12 part 3).

Real slides (mlcamsr.synth, ../shared/data), real stores written by the real extractor.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.mlcamsr import main
from mlcamsr import open_store
from mlcamsr.errors import StoreError
from mlcamsr.extract import TASKS_PREFIX, extract
from mlcamsr.fingerprint import fingerprint, fingerprint_change, sha256_full


def _offset_table_byte(path: Path) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[0].tags["TileOffsets"]
        return tag.valueoffset + 3  # a byte inside the level-0 tile offset table


def test_fingerprint_reads_little_and_sees_truncation_and_rewrites(synth_dir, tmp_path):
    src = synth_dir / "slide_000.tif"
    a = fingerprint(src)
    assert a["size"] == src.stat().st_size and len(a["digest"]) == 64
    assert a["bytes_read"] < 200_000 < a["size"]  # O(1): ranges + structure, not the file
    copy = tmp_path / "copy.tif"
    shutil.copyfile(src, copy)
    assert fingerprint_change(a, fingerprint(copy)) is None  # a copy is the same slide
    # an offset-table byte rewritten (same size): another layout, another digest
    data = bytearray(copy.read_bytes())
    data[_offset_table_byte(copy)] ^= 0xFF
    copy.write_bytes(bytes(data))
    assert "fingerprint changed" in fingerprint_change(a, fingerprint(copy))
    # truncated
    copy.write_bytes(src.read_bytes()[:-1000])
    assert "size changed" in fingerprint_change(a, fingerprint(copy))
    # another slide of the same kind
    other = fingerprint(synth_dir / "slide_001.tif")
    assert fingerprint_change(a, other) is not None


def test_folder_slide_fingerprint(shared_data):
    d = shared_data / "wsi" / "dicom-CMU-1-Small-Region"
    a, b = fingerprint(d), fingerprint(d)
    assert a["digest"] == b["digest"] and a["size"] == sum(f.stat().st_size for f in d.iterdir())
    assert sha256_full(d)[1] == a["size"]


@pytest.fixture()
def slides_copy(synth_dir, tmp_path) -> Path:
    d = tmp_path / "slides"
    shutil.copytree(synth_dir, d)
    return d


def _killed_run(slides: Path, out: Path, kw: dict, monkeypatch) -> None:
    """Leave ``out`` as a run killed half way leaves it: some shard records (in the work
    folder: a run folds them only when it ends), no table, unfinished."""
    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("mlcamsr.extract.finish_store", killed)
        with pytest.raises(KeyboardInterrupt):
            extract(slides, slides / "coords.csv", out, **kw)
    records = sorted((out / TASKS_PREFIX).glob("*.json"))
    assert records and not (out / "table").exists()
    for r in records[len(records) // 2 :]:
        r.unlink()


def test_resume_refuses_a_truncated_or_replaced_slide(slides_copy, tmp_path, monkeypatch):
    out = tmp_path / "s.zarr"
    kw = dict(size=256, workers=0, progress=False, shard_rows=4)
    _killed_run(slides_copy, out, kw, monkeypatch)
    a = open_store(out).attrs
    assert a["slide_hash"] == "fingerprint"
    fp = a["slides"]["slide_000.tif"]["fingerprint"]
    assert fp["kind"] == "fp1" and "sha256" not in a["slides"]["slide_000.tif"]
    slide = slides_copy / "slide_000.tif"
    good = slide.read_bytes()
    slide.write_bytes(good[: len(good) - 4096])  # truncated after the run started
    with pytest.raises(StoreError, match=r"slide slide_000.tif is not the file .* size changed"):
        extract(slides_copy, slides_copy / "coords.csv", out, **kw)
    shutil.copyfile(slides_copy / "slide_001.tif", slide)  # replaced by another slide
    with pytest.raises(StoreError, match="slide slide_000.tif"):
        extract(slides_copy, slides_copy / "coords.csv", out, **kw)
    # the original back: the resume goes on and finishes
    slide.write_bytes(good)
    res = extract(slides_copy, slides_copy / "coords.csv", out, **kw)
    assert res.tasks_skipped > 0 and open_store(out).attrs["complete"] is True
    # a finished store is checked too (rerun = "already done" only for the same slides)
    slide.write_bytes(good[:-10])
    with pytest.raises(StoreError, match="slide_000.tif"):
        extract(slides_copy, slides_copy / "coords.csv", out, **kw)


def test_cli_hash_full_names_itself_and_changed_slide_is_one_line(slides_copy, tmp_path):
    out = tmp_path / "f.zarr"
    args = ["extract", "--slides", str(slides_copy), "--coords", str(slides_copy / "coords.csv"),
            "--out", str(out), "--size", "256", "--workers", "0", "--quiet"]
    r = CliRunner().invoke(main, [*args, "--hash", "full"])
    assert r.exit_code == 0, r.output
    a = open_store(out).attrs
    assert a["slide_hash"] == "full"
    meta = a["slides"]["slide_001.tif"]
    assert meta["sha256"] == sha256_full(slides_copy / "slide_001.tif")[0]
    assert meta["fingerprint"]["size"] == (slides_copy / "slide_001.tif").stat().st_size
    p = slides_copy / "slide_001.tif"
    p.write_bytes(p.read_bytes()[:-1])
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "slide_001.tif" in r.output and "--overwrite" in r.output
    r = CliRunner().invoke(main, [*args, "--hash", "sha1"])
    assert r.exit_code == 2 and "fingerprint" in r.output


def test_url_fingerprint_equals_the_local_one_without_etag(synth_dir):
    """An fsspec URL is fingerprinted through the filesystem (ranges read remotely when
    the store has no ETag), with the same digest as the local file."""
    import fsspec

    src = synth_dir / "slide_001.tif"
    fs = fsspec.filesystem("memory")
    fs.pipe("/fp_test/slide_001.tif", src.read_bytes())
    try:
        remote, local = fingerprint("memory://fp_test/slide_001.tif"), fingerprint(src)
        assert "etag" not in remote and remote["size"] == local["size"]
        assert fingerprint_change(local, remote) is None
    finally:
        fs.rm("/fp_test", recursive=True)
