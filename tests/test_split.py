"""`mlcamsr split`: determinism, slides on one side, closest ratio, rerun no-op, bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlcamsr.errors import InputError
from mlcamsr.split import assign_split, parse_ratio
from tests.builders import build_store, tree_digest


def make_table(sizes: list[int], *, rejected_every: int = 0, seed: int = 0) -> pd.DataFrame:
    """A table with ``sizes[i]`` rows for slide i; every ``rejected_every``-th row rejected."""
    rng = np.random.default_rng(seed)
    slides = [f"slide_{i:02d}" for i, n in enumerate(sizes) for _ in range(n)]
    n = len(slides)
    status = ["kept"] * n
    if rejected_every:
        for i in range(0, n, rejected_every):
            status[i] = "rejected"
    return pd.DataFrame(
        {
            "slide": slides,
            "status": status,
            "label": rng.choice(["tumor", "normal"], size=n),
            "index": [i if s == "kept" else -1 for i, s in enumerate(status)],
        }
    )


def run_cli(*args: str):
    from cli.mlcamsr import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """18 tiny patches on 5 slides (sizes 6, 4, 3, 3, 2), one rejected."""
    sizes = [6, 4, 3, 3, 2]
    slides = [f"s{i}" for i, n in enumerate(sizes) for _ in range(n)]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (len(slides), 16, 16, 3), dtype=np.uint8)
    status = ["kept"] * len(slides)
    status[1] = "rejected"
    return build_store(tmp_path / "s.zarr", images, slides, scales=(1,), status=status)


def test_by_slide_keeps_slides_whole_and_gets_the_closest_ratio() -> None:
    sizes = [40, 33, 20, 17, 12, 9, 7, 5, 3, 1]
    table = make_table(sizes, rejected_every=7)
    col = assign_split(table, ratio=(5, 1), seed=3)
    kept = table["status"] == "kept"
    assert (col[~kept] == "").all() and col[kept].isin(["train", "test"]).all()
    per_slide = col[kept].groupby(table.loc[kept, "slide"]).nunique()
    assert (per_slide == 1).all()  # no slide on both sides
    counts = table[kept].groupby("slide").size().to_numpy()
    target = counts.sum() / 6
    best = min(
        abs(sum(c) - target)
        for r in range(1, len(counts))
        for c in itertools.combinations(counts, r)
    )
    assert abs((col == "test").sum() - target) == pytest.approx(best)


def test_same_arguments_same_split_and_seed_matters() -> None:
    table = make_table([5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5])
    a = assign_split(table, seed=0)
    assert a.equals(assign_split(table.copy(), seed=0))
    assert not a.equals(assign_split(table, seed=1))
    p = assign_split(table, by="patch", seed=0)
    assert p.equals(assign_split(table, by="patch", seed=0))
    assert (p == "test").sum() == 10 and (p == "train").sum() == 50


def test_by_patch_stratified_keeps_the_ratio_per_label() -> None:
    table = make_table([30, 30, 30, 30])
    col = assign_split(table, ratio=(3, 1), by="patch", stratify="label")
    for _lab, grp in col.groupby(table["label"]):
        assert (grp == "test").sum() == round(len(grp) / 4)


def test_by_slide_stratified_balances_labels() -> None:
    table = make_table([10, 12, 14, 8, 9, 11, 13, 7, 6, 10], seed=2)
    col = assign_split(table, ratio=(4, 1), stratify="label")
    assert (col.groupby(table["slide"]).nunique() == 1).all()
    for _lab, grp in col.groupby(table["label"]):
        assert abs((grp == "test").sum() - len(grp) / 5) <= 3


def test_cli_prints_ratio_rerun_is_a_no_op_and_other_args_need_overwrite(store: Path) -> None:
    from mlcamsr.store import open_store

    r = run_cli("split", str(store))
    assert r.exit_code == 0 and "achieved ratio" in r.output
    st = open_store(store)
    assert st.attrs["split"] == {"ratio": [5.0, 1.0], "seed": 0, "by": "slide", "stratify": None}
    table = st.table
    assert table.loc[1, "split"] == "" and table.loc[table.status == "kept", "split"].ne("").all()
    before = tree_digest(store)
    r = run_cli("split", str(store), "--ratio", "5:1", "--seed", "0")
    assert r.exit_code == 0 and "unchanged" in r.output
    assert tree_digest(store) == before
    r = run_cli("split", str(store), "--seed", "1")
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert tree_digest(store) == before
    r = run_cli("split", str(store), "--by", "patch", "--overwrite")
    assert r.exit_code == 0
    assert open_store(store).attrs["split"]["by"] == "patch"


@pytest.mark.parametrize(
    "args,want",
    [
        (["--ratio", "5-1"], "--ratio"),
        (["--ratio", "0:1"], "--ratio"),
        (["--stratify", "colour"], "--stratify 'colour'"),
    ],
)
def test_bad_options_get_one_line_exit_2_store_untouched(store: Path, args, want) -> None:
    before = tree_digest(store)
    r = run_cli("split", str(store), *args)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and want in lines[0], r.output
    assert tree_digest(store) == before


@pytest.mark.parametrize("case", ["not-ours", "missing", "no-kept", "one-slide"])
def test_bad_stores_get_one_line_exit_2_store_untouched(case: str, tmp_path: Path) -> None:
    import zarr

    path = tmp_path / "bad.zarr"
    images = np.zeros((3, 16, 16, 3), np.uint8)
    if case == "not-ours":
        zarr.open_group(path, mode="w", zarr_format=3)
        want = "not an MLCamSR store"
    elif case == "missing":
        want = "not found"
    elif case == "no-kept":
        build_store(path, images, ["a", "b", "c"], scales=(1,), status=["rejected"] * 3)
        want = "0 kept patch"
    else:
        build_store(path, images, ["a", "a", "a"], scales=(1,))
        want = "--by patch"
    before = tree_digest(path) if path.exists() else None
    r = run_cli("split", str(path))
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and want in lines[0], r.output
    assert (tree_digest(path) if path.exists() else None) == before


def test_parse_ratio() -> None:
    assert parse_ratio("5:1") == (5.0, 1.0)
    assert parse_ratio("4.5:1.5") == (4.5, 1.5)
    with pytest.raises(InputError):
        parse_ratio("5:1:1")
