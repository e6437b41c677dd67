"""Integrity end to end: `mlcamsr verify` names exactly the damaged rows, readers refuse
them, and rerunning the same extract/pyramid repairs them into a store identical to a
clean one (SPEC "Integrity and exposure")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.mlcamsr import main
from mlcamsr import open_store, shards
from mlcamsr.errors import StoreError
from mlcamsr.extract import extract
from mlcamsr.pyramid import pyramid
from mlcamsr.verify import verify


def _extract(synth_dir: Path, out: Path):
    return extract(synth_dir, synth_dir / "coords.csv", out, size=256, shard_rows=4, workers=0, progress=False)


@pytest.fixture(scope="module")
def clean(synth_dir, tmp_path_factory) -> Path:
    """A finished store of 6 shards with its bicubic members."""
    out = tmp_path_factory.mktemp("verify") / "clean.zarr"
    _extract(synth_dir, out)
    pyramid(out, workers=0, progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _flip(path: Path, layout, row: int, cy: int = 0, cx: int = 0) -> None:
    data = bytearray(path.read_bytes())
    off, n = (int(v) for v in shards.ShardFile.from_bytes(layout, bytes(data)).index[row, cy, cx])
    data[off + n // 3] ^= 0xFF
    path.write_bytes(bytes(data))


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_verify_lists_damage_and_the_same_extract_repairs_exactly_it(clean, synth_dir, tmp_path):
    st = open_store(clean)
    kept = set(st.table.index[st.table.status == "kept"])
    assert verify(clean).ok and _run("verify", str(clean)).exit_code == 0

    bad = tmp_path / "bad.zarr"
    shutil.copytree(clean, bad)
    (bad / "40x/c/1/0/0/0").unlink()  # a lost shard: rows 4..7
    _flip(bad / "20x/c/3/0/0/0", shards.layout_of(st["20x"]), row=2)  # one chunk of row 14
    _flip(bad / "10x_bicubic/c/0/0/0/0", shards.layout_of(st["10x_bicubic"]), row=1)  # row 1

    rep = verify(bad)
    assert not rep.ok and rep.exit_code == 1
    want = {("40x", r) for r in range(4, 8) if r in kept} | {("20x", 14), ("10x_bicubic", 1)}
    assert {(d.member, r) for d in rep.damage for r in d.rows} == want
    res = _run("verify", str(bad))
    assert res.exit_code == 1
    assert "damaged: 20x row 14 (" in res.output and "crc32c" in res.output
    assert "damaged: 40x row 5" in res.output and "40x/c/1/0/0/0 is missing" in res.output
    assert "rerun the same `mlcamsr extract`" in res.output and "mlcamsr pyramid" in res.output

    # readers refuse the damaged rows with one line, never zeros
    from mlcamsr.dataset import TripletDataset

    ds = TripletDataset(str(bad), split="all", scale=2, augment=False, full=True)
    pos = {int(r): k for k, r in enumerate(ds.rows)}
    with pytest.raises(StoreError, match="member 40x row 5 is damaged .*missing.*mlcamsr verify"):
        ds[pos[5]]
    with pytest.raises(StoreError, match="member 20x row 14 is damaged .*crc32c"):
        TripletDataset(str(bad), split="all", scale=4, augment=False, full=True)[pos[14]]
    ds[pos[0]]  # an undamaged row reads
    with pytest.raises(StoreError, match="member (40x row 4|20x row 14) is damaged"):  # x2 reads 20x too (ref)
        TripletDataset(str(bad), split="all", scale=2, augment=False, full=True, in_memory=True)
    res = _run("preview", str(bad), "--out", str(tmp_path / "sheet.png"), "--rows", "5")
    assert res.exit_code == 2 and "member 40x row 5 is damaged" in res.output
    info = _run("info", str(bad))
    assert "DAMAGED" in info.output and info.exit_code == 1

    # the same extract rewrites exactly the damaged real shards; pyramid its own
    res = _extract(synth_dir, bad)
    assert res.repaired == [1, 3] and res.tasks_run == 2
    assert {d.member for d in verify(bad).damage} == {"10x_bicubic"}
    pr = pyramid(bad, workers=0, progress=False)
    assert pr.shards_done == 1
    assert verify(bad).ok
    assert _files(bad) == _files(clean)  # byte for byte the clean store


def test_damaged_or_missing_table_is_one_line_never_healthy(clean, tmp_path):
    bad = tmp_path / "t.zarr"
    shutil.copytree(clean, bad)
    data = (bad / "table/c/0").read_bytes()
    (bad / "table/c/0").write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=r"table/c/0 is damaged .*rerun the same `mlcamsr extract`"):
        open_store(bad).table  # noqa: B018
    for cmd in (["info"], ["info", "--json"], ["verify"], ["pyramid"], ["split"], ["preview", "--out", str(tmp_path / "p.png")]):
        res = _run(*cmd[:1], str(bad), *cmd[1:])
        assert res.exit_code in (1, 2), (cmd, res.output)
        assert "Traceback" not in res.output and "table/c/0" in res.output, (cmd, res.output)
    (bad / "table/c/0").unlink()
    res = _run("info", str(bad), "--json")  # was: complete true, rows 0, rc 0
    assert res.exit_code == 1 and '"ok": false' in res.output and "no patch table" in res.output
    res = _run("verify", str(bad))
    assert res.exit_code == 1 and "no patch table" in res.output


def test_a_flipped_table_byte_is_caught_by_its_recorded_crc(clean, tmp_path):
    bad = tmp_path / "t.zarr"
    shutil.copytree(clean, bad)
    data = bytearray((bad / "table/c/0").read_bytes())
    data[len(data) // 2] ^= 1
    (bad / "table/c/0").write_bytes(bytes(data))
    with pytest.raises(StoreError, match="table/c/0 is damaged"):
        open_store(bad).table  # noqa: B018
    assert not verify(bad).ok


def test_overwrite_never_replaces_data_this_tool_did_not_make(synth_dir, tmp_path):
    import zarr

    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(foreign, mode="w").create_array("x", shape=(4,), dtype="uint8")
    (foreign / "notes.txt").write_text("mine")
    before = _files(foreign)
    base = ["extract", "--slides", str(synth_dir), "--coords", str(synth_dir / "coords.csv"),
            "--size", "64", "--workers", "0", "--quiet"]
    for extra in ([], ["--overwrite"]):
        res = _run(*base, "--out", str(foreign), *extra)
        assert res.exit_code == 2 and "not a store this tool made" in res.output and "--overwrite" not in res.output
    assert _files(foreign) == before
    with pytest.raises(StoreError, match="not a store this tool made"):
        open_store(foreign, "w")
    # a store of ours is replaced, a file the user put inside it is not ours to delete
    ours = tmp_path / "ours.zarr"
    assert _run(*base, "--out", str(ours)).exit_code == 0
    (ours / "notes.txt").write_text("mine")
    assert _run(*base, "--out", str(ours), "--scales", "1,2", "--overwrite").exit_code == 0
    assert open_store(ours).members == ["40x", "20x"] and (ours / "notes.txt").read_text() == "mine"
    assert not (ours / "10x").exists()


def _walk_plain_zarr(path: Path) -> list[str]:
    """Open, list, walk and read a store with plain zarr, every warning an error."""
    import io
    import warnings

    import pandas as pd
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = zarr.open_group(path, mode="r")
        names = sorted(k for k, _ in g.members(max_depth=None))
        g.tree()
        zarr.open(path, mode="r")
        table = pd.read_parquet(io.BytesIO(g["table"][:].tobytes()))  # the table, through zarr alone
    assert len(table) == len(open_store(path).table)
    return names


def test_a_finished_store_is_plain_zarr_without_warnings_or_work_folders(clean, tmp_path):
    done = tmp_path / "done.zarr"
    shutil.copytree(clean, done)
    assert _run("split", str(done), "--by", "patch").exit_code == 0
    names = _walk_plain_zarr(done)  # was: 3 ZarrUserWarnings (table.parquet, _extract, _pyramid)
    assert {"40x", "20x", "10x", "20x_bicubic", "table"} <= set(names)
    left = sorted(p.name for p in done.iterdir())
    assert left == sorted(["zarr.json", "table", *open_store(done).members]), left
    # the records verify and repair use now live in each member's attributes
    st = open_store(done)
    assert set(st.folded_records("40x")) == set(range(6)) and len(st.folded_records("5x_bicubic")[0]) == 3


def test_a_killed_run_leaves_work_records_and_the_rerun_resumes_then_folds_them(synth_dir, clean, tmp_path, monkeypatch):
    out = tmp_path / "k.zarr"

    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("mlcamsr.extract.finish_store", killed)
        with pytest.raises(KeyboardInterrupt):
            _extract(synth_dir, out)
    records = sorted((out / "_extract/tasks").glob("*.json"))
    assert len(records) == 6  # during a run (or after a crash) the work records are there
    for r in records[3:]:
        r.unlink()
    res = _extract(synth_dir, out)
    assert res.tasks_run == 3 and res.tasks_skipped == 3
    assert not (out / "_extract").exists() and verify(out).ok
    pyramid(out, workers=0, progress=False)
    assert _files(out) == _files(clean)  # resumed = uninterrupted, byte for byte


def test_a_format_2_store_still_reads_verifies_and_repairs_in_its_own_layout(synth_dir, tmp_path, monkeypatch):
    """Stores written before format 3 keep table.parquet and their work folders (their
    records): read, verified and repaired as before, never converted in place."""
    out = tmp_path / "v2.zarr"
    monkeypatch.setattr("mlcamsr.extract.FORMAT_VERSION", 2)
    _extract(synth_dir, out)
    pyramid(out, workers=0, progress=False)
    st = open_store(out)
    assert st.attrs["format_version"] == 2 and (out / "table.parquet").is_file()
    assert len(list((out / "_extract/tasks").glob("*.json"))) == 6 and (out / "_pyramid").is_dir()
    assert not (out / "table").exists() and st.folded_records("40x") == {}
    assert verify(out).ok and len(st.table) == 24
    clean = _files(out)
    (out / "40x/c/1/0/0/0").unlink()
    assert {d.shard for d in verify(out).damage} == {1}
    assert _extract(synth_dir, out).repaired == [1]
    assert verify(out).ok and _files(out) == clean


def test_a_store_made_before_the_stain_check_still_resumes_and_repairs_under_its_rules(synth_dir, tmp_path):
    """Its QC parameters lack min_stain: the same extract command repairs it (not "made with
    other parameters"), with the stain check off as when it was made."""
    from mlcamsr.extract import _params_hash

    out = tmp_path / "old.zarr"
    _extract(synth_dir, out)
    st = open_store(out, "r+")
    params = st.attrs["params"]
    del params["qc"]["min_stain"]
    st.update_attrs(params=params, params_hash=_params_hash(params))
    clean = _files(out)
    (out / "40x/c/2/0/0/0").unlink()
    res = _extract(synth_dir, out)
    assert res.repaired == [2] and verify(out).ok and _files(out) == clean
