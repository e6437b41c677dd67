"""Property-based probes (hypothesis): arbitrary coords bytes and option values give a
result or one clear line with exit 1/2, never a traceback (issue 9). Bounded for CI."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.mlcamsr import main
from mlcamsr.coords import read_coords
from mlcamsr.errors import InputError

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_cell = st.one_of(
    st.sampled_from(["", "slide_000.tif", "a.tif", "1", "-3", "1e308", "nan", "inf", "0x10",
                     "1,5", '"1,5"', " 12 ", "../x", "/etc/passwd", "é", "\x00", "3.5"]),
    st.text(max_size=8),
)
_csv = st.builds(
    lambda header, rows: "\n".join([",".join(header), *(",".join(r) for r in rows)]),
    st.lists(st.sampled_from(["slide", "x", "y", "label", "mpp", "status", "extra", "x"]), min_size=0, max_size=5),
    st.lists(st.lists(_cell, max_size=6), max_size=5),
)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=200), _csv.map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_coords_reader_gives_a_table_or_one_line(data):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.csv"
        p.write_bytes(data)
        try:
            df = read_coords(p)
        except InputError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert {"slide", "x", "y", "label", "mpp"} <= set(df.columns) and len(df)


_value = st.one_of(
    st.sampled_from(["nan", "-nan", "inf", "-inf", "0", "-1", "1e308", "1e-308", "", " ", "1,2",
                     "nan,0,0", "0:0", "1:0", "2,3,4,5", "abc", "9" * 30, "1e3", "0.5", "16"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.text(max_size=10),
)
# (command, option); each run stops at an input that cannot exist, after the options
# have been checked: nothing heavy runs, only the option handling is probed
_OPTIONS = [("extract", o) for o in (
    "--size", "--base-mpp", "--base-mag", "--scales", "--workers", "--mpp", "--min-tissue",
    "--rgb-mean", "--rgb-tol", "--min-align-psnr", "--shard-rows", "--chunk", "--zstd-level",
    "--cache-mb", "--backend", "--out")] + [
    ("split", "--ratio"), ("split", "--seed"), ("preview", "--cell"), ("preview", "--n"),
    ("preview", "--cols"), ("sample-coords", "--n"), ("sample-coords", "--size"),
    ("pyramid", "--levels"), ("pyramid", "--workers"), ("info", "--json"), ("verify", "--json"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("props")
    (d / "slides").mkdir()
    (d / "empty.csv").write_text("")
    return {"slides": str(d / "slides"), "coords": str(d / "empty.csv"), "store": str(d / "none.zarr"),
            "dir": str(d)}


def _args(cmd: str, inputs: dict[str, str]) -> list[str]:
    if cmd == "extract":
        return ["extract", "--slides", inputs["slides"], "--coords", inputs["coords"], "--workers", "0",
                "--quiet", "--out", inputs["store"]]
    if cmd == "sample-coords":
        return ["sample-coords", "--slides", inputs["slides"], "--n", "2", "--out",
                inputs["dir"] + "/c.csv", "--no-progress"]
    if cmd == "preview":
        return ["preview", inputs["store"], "--out", inputs["dir"] + "/p.png"]
    return [cmd, inputs["store"]]


@SETTINGS
@given(which=st.sampled_from(_OPTIONS), value=_value)
def test_cli_options_give_one_line_never_a_traceback(inputs, which, value):
    cmd, opt = which
    args = _args(cmd, inputs) + ([opt] if opt == "--json" else [opt, value])
    res = CliRunner().invoke(main, args)
    assert res.exit_code in (1, 2), (args, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
    assert "Traceback" not in res.output, (args, res.output)
