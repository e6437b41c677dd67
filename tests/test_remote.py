"""Slides and store on a real S3 endpoint (moto server on 127.0.0.1), a separate-process
dask cluster, and the bad-input one-liners (issue 11)."""

from __future__ import annotations

import os
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
from mlcamsr.errors import StoreError
from mlcamsr.extract import extract
from mlcamsr.remote import RemoteLock, check_fence, filesystem
from mlcamsr.store import open_store
from tests.remote_fixtures import free_port, kill, start_dask_cluster, start_moto

SMALL = {"size": 256, "shard_rows": 2, "progress": False}


@pytest.fixture(scope="module")
def s3_slides(s3_endpoint, synth_dir: Path) -> str:
    """The synthetic slides uploaded to s3://slides/cam/ (the coords name them as locally)."""
    fs = s3_endpoint.fs()
    s3_endpoint.bucket("slides")
    for f in sorted(synth_dir.glob("*.tif")):
        fs.put(str(f), f"slides/cam/{f.name}")
    s3_endpoint.bucket("stores")
    return "s3://slides/cam/"


@pytest.fixture(scope="module")
def local_ref(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local, serial run every remote run must equal."""
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    extract(synth_dir, synth_dir / "coords.csv", out, workers=0, **SMALL)
    return out


def assert_same_store(a_path, b_path) -> None:
    """Array by array and table row by row."""
    a, b = open_store(a_path), open_store(b_path)
    assert a.members == b.members
    for m in a.members:
        np.testing.assert_array_equal(a[m][:], b[m][:], err_msg=m)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.attrs["params_hash"] == b.attrs["params_hash"]
    assert b.attrs["complete"] is True


def test_extract_s3_slides_to_s3_store_equals_local(s3_slides, synth_dir, local_ref, tmp_path) -> None:
    """`mlcamsr extract` with slides and store on S3 equals the local run; so do pyramid
    and split on it; info reads it; a rerun resumes a finished store without work."""
    import shutil

    url = "s3://stores/serial.zarr"
    args = ["extract", "--slides", s3_slides, "--coords", str(synth_dir / "coords.csv"), "--out", url,
            "--size", "256", "--shard-rows", "2", "--workers", "0", "--quiet"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert_same_store(local_ref, url)
    slide = open_store(url).attrs["slides"]["slide_000.tif"]
    assert slide["url"] == "s3://slides/cam/slide_000.tif" and slide["etag"] and slide["size"] > 0
    assert slide["reader"] == "tiffslide" and "sha256" not in slide  # remote: hashing is opt-in
    again = extract(s3_slides, synth_dir / "coords.csv", url, workers=0, **SMALL)
    assert again.tasks_run == 0
    local = tmp_path / "l.zarr"
    shutil.copytree(local_ref, local)
    for store in (str(local), url):
        for cmd in (["pyramid", store, "--levels", "1", "--no-progress"], ["split", store, "--ratio", "1:1"]):
            r = CliRunner().invoke(main, cmd)
            assert r.exit_code == 0, r.output
    assert_same_store(local, url)
    r = CliRunner().invoke(main, ["info", url, "--json"])
    assert r.exit_code == 0 and '"kept"' in r.output, r.output
    r = CliRunner().invoke(main, ["verify", url])  # every kept row's shards and chunks, on S3
    assert r.exit_code == 0, r.output
    fs, path = filesystem(url)
    fs.rm(f"{path}/40x/c/0/0/0/0")  # a lost shard object: rows 0-1
    r = CliRunner().invoke(main, ["verify", url])
    assert r.exit_code == 1 and "damaged: 40x row 0" in r.output, r.output


def test_lease_refuses_a_second_writer_and_fences_a_stale_one(s3_endpoint) -> None:
    s3_endpoint.bucket("stores")
    url = "s3://stores/leased.zarr"
    first = RemoteLock(url).acquire()
    try:
        check_fence(url, first.token)  # the holder may write
        other = RemoteLock(url)
        other._dead_here = lambda info: False  # as if the holder ran on another host
        with pytest.raises(StoreError, match="in use by another run"):
            other.acquire()
    finally:
        first.release()
    second = RemoteLock(url).acquire()
    try:
        assert second.token == first.token + 1
        with pytest.raises(StoreError, match="stale"):
            check_fence(url, first.token)  # a worker of the first run writes nothing now
    finally:
        second.release()


def test_lease_of_a_dead_process_is_taken_over(s3_endpoint) -> None:
    """A killed client leaves a live-looking lease; its rerun on the same host takes it over."""
    s3_endpoint.bucket("stores")
    url = "s3://stores/dead.zarr"
    code = f"import os; from mlcamsr.remote import RemoteLock; RemoteLock({url!r}).acquire(); os._exit(0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lock = RemoteLock(url).acquire()
    assert lock.token == 2
    lock.release()


def test_extract_on_separate_process_cluster_equals_local(dask_cluster, s3_slides, synth_dir, local_ref) -> None:
    url = "s3://stores/cluster.zarr"
    res = extract(s3_slides, synth_dir / "coords.csv", url, scheduler=dask_cluster.address, **SMALL)
    assert res.n_failed == 0 and res.tasks_run == 12
    assert_same_store(local_ref, url)


def _records(fs, url: str) -> int:
    try:
        return len(fs.ls(url.removeprefix("s3://") + "/_extract/tasks", refresh=True))
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_cluster_worker_killed_mid_run_still_equals_local(s3_endpoint, s3_slides, synth_dir, tmp_path) -> None:
    """SIGKILL one of the two worker processes while shards run: dask reschedules its
    tasks on the other, and the store equals a local run."""
    import threading

    one = {**SMALL, "shard_rows": 1}
    ref = tmp_path / "ref.zarr"
    extract(synth_dir, synth_dir / "coords.csv", ref, workers=0, **one)
    cluster = start_dask_cluster(tmp_path / "dask")
    url = "s3://stores/killed-worker.zarr"
    fs = s3_endpoint.fs()
    try:
        box: dict = {}
        t = threading.Thread(target=lambda: box.setdefault("res", extract(
            s3_slides, synth_dir / "coords.csv", url, scheduler=cluster.address, **one)))
        t.start()
        deadline = time.monotonic() + 60
        while _records(fs, url) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _records(fs, url) < 24, "the run ended before the kill"
        kill(cluster.workers[1])
        t.join(timeout=180)
        assert not t.is_alive()
        assert box["res"].n_failed == 0 and box["res"].n_rows == 24
        assert_same_store(ref, url)
    finally:
        cluster.close()


@pytest.mark.slow
def test_client_killed_then_rerun_resumes(dask_cluster, s3_endpoint, s3_slides, synth_dir, tmp_path) -> None:
    url = "s3://stores/killed-client.zarr"
    fs = s3_endpoint.fs()
    cmd = [sys.executable, "-c", "from cli.mlcamsr import main; main()", "extract", "--slides", s3_slides, "--coords",
           str(synth_dir / "coords.csv"), "--out", url, "--size", "256", "--shard-rows", "1",
           "--scheduler", dask_cluster.address, "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while _records(fs, url) < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = _records(fs, url)
    assert 1 <= done < 24
    one = {**SMALL, "shard_rows": 1}
    res = extract(s3_slides, synth_dir / "coords.csv", url, scheduler=dask_cluster.address, **one)
    assert res.tasks_skipped >= done and res.tasks_run + res.tasks_skipped == 24
    ref = tmp_path / "ref.zarr"
    extract(synth_dir, synth_dir / "coords.csv", ref, workers=0, **one)
    assert_same_store(ref, url)


# ----------------------------------------------------------------------------- bad input


def _one_line_exit_2(args: list[str]) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert "Traceback" not in r.output
    return lines[0]


def _extract_args(synth_dir: Path, slides: str, out: str, *extra: str) -> list[str]:
    return ["extract", "--slides", slides, "--coords", str(synth_dir / "coords.csv"), "--out", out,
            "--size", "256", "--workers", "0", "--quiet", *extra]


def test_bad_input_unreachable_endpoint(s3_endpoint, synth_dir, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    line = _one_line_exit_2(_extract_args(synth_dir, str(synth_dir), "s3://stores/x.zarr"))
    assert "s3://stores/x.zarr" in line and "cannot reach" in line and "AWS_ENDPOINT_URL" in line
    assert time.monotonic() - t0 < 30


def test_bad_input_missing_bucket_writes_nothing(s3_endpoint, synth_dir) -> None:
    line = _one_line_exit_2(_extract_args(synth_dir, str(synth_dir), "s3://no-such-bucket/x.zarr"))
    assert "no-such-bucket" in line and "does not exist" in line and "create it" in line
    assert not s3_endpoint.fs().exists("no-such-bucket")
    line = _one_line_exit_2(_extract_args(synth_dir, "s3://no-such-bucket/slides/", "out.zarr"))
    assert "--slides" in line and "no-such-bucket" in line


def test_bad_input_wrong_credentials(tmp_path, synth_dir, monkeypatch) -> None:
    """A real server that checks signatures (moto with IAM auth on) refuses the keys."""
    pytest.importorskip("moto.server")
    proc, url = start_moto(tmp_path, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        line = _one_line_exit_2(_extract_args(synth_dir, str(synth_dir), "s3://stores/x.zarr"))
        assert "s3://stores/x.zarr" in line and "credentials" in line and "AWS_ACCESS_KEY_ID" in line
    finally:
        kill(proc)


def test_bad_input_scheduler_that_does_not_answer(synth_dir, tmp_path) -> None:
    out = tmp_path / "never.zarr"
    addr = f"tcp://127.0.0.1:{free_port()}"
    line = _one_line_exit_2(_extract_args(synth_dir, str(synth_dir), str(out), "--scheduler", addr))
    assert addr in line and "dask scheduler" in line
    assert not out.exists()


def test_bad_input_scheme_without_implementation(synth_dir, tmp_path) -> None:
    line = _one_line_exit_2(_extract_args(synth_dir, str(synth_dir), "nosuchfs://bucket/x.zarr"))
    assert "nosuchfs://" in line
    line = _one_line_exit_2(_extract_args(synth_dir, "nosuchfs://bucket/slides/", str(tmp_path / "o.zarr")))
    assert "nosuchfs://" in line and not (tmp_path / "o.zarr").exists()


def test_bad_storage_options_json(synth_dir) -> None:
    r = CliRunner().invoke(main, [*_extract_args(synth_dir, str(synth_dir), "s3://stores/x.zarr"),
                                  "--storage-options", "{not json"])
    assert r.exit_code == 2 and "--storage-options" in r.output and "Traceback" not in r.output


def test_sr_input_slide_on_s3_reads_like_local(s3_slides, synth_dir) -> None:
    """``cwtnet-sr --input s3://...``: the same pixels as the local file, by byte range."""
    from cwtnet.infer import open_source

    region = (1000, 800, 96, 64)
    got = open_source(f"{s3_slides}slide_000.tif", region=region, level=1)
    want = open_source(synth_dir / "slide_000.tif", region=region, level=1)
    try:
        assert got[1:4] == want[1:4]
        np.testing.assert_array_equal(got[0](0, 0, 96, 64), want[0](0, 0, 96, 64))
    finally:
        got[4]()
        want[4]()


def test_sample_coords_from_s3_equals_local(s3_slides, synth_dir, tmp_path) -> None:
    from mlcamsr.sampling import sample_coords

    kw = {"n": 6, "size": 256, "seed": 1, "overlays": False}
    want = sample_coords(synth_dir, **kw)
    got = sample_coords(s3_slides, **kw)
    pd.testing.assert_frame_equal(want.reset_index(drop=True), got.reset_index(drop=True))


def test_full_hash_of_a_remote_slide_equals_local(s3_slides, synth_dir) -> None:
    """``--hash full`` on object storage streams the object: the same sha256 as the file."""
    from mlcamsr.fingerprint import fingerprint, sha256_full

    url = f"{s3_slides}slide_000.tif"
    assert sha256_full(url) == sha256_full(synth_dir / "slide_000.tif")
    fp = fingerprint(url)
    assert fp["etag"] and fp["size"] == (synth_dir / "slide_000.tif").stat().st_size
