"""No process outlives a killed parent (issue 9: kill -9 of `mlcamsr pyramid` left its
pool workers and a resource tracker, ~400 MB, running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PARENT = """
import multiprocessing as mp, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from mlcamsr.pyramid import die_with_parent


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        # both workers up and initialised (each busy with one task while the other starts)
        pids = {f.result() for f in [pool.submit(pid_after, 2.0) for _ in range(2)]}
        futs = [pool.submit(time.sleep, 120) for _ in range(2)]
        print(" ".join(str(p) for p in sorted(set(pool._processes))), flush=True)
        time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_pool_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)
    finally:
        proc.kill()
