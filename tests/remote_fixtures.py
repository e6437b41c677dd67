"""Real services on 127.0.0.1 for the scale-out tests (issue 11), started by pytest.

- ``s3_endpoint``: moto's S3 server (``moto[server]``, what s3fs's own tests use) as a
  subprocess on a free loopback port; the ``AWS_*`` environment points every client of
  this process and its children at it (``AWS_ENDPOINT_URL``), as a user's would.
- ``dask_cluster``: ``dask scheduler`` and two ``dask worker`` processes, each in its own
  working directory, loopback only, no dashboard.

Every process is started in its own session with ``PR_SET_PDEATHSIG`` (it dies with
pytest even when pytest is killed) and killed at teardown; start-up waits are bounded.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen:
    """A child process that dies with this one; stdout+stderr to ``log``."""
    fh = open(log, "wb")  # noqa: SIM115 - closed by the caller's kill()
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


def _wait(what: str, ok, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ok():
            return
        for p, log in zip(procs, logs, strict=False):
            if p.poll() is not None:
                raise RuntimeError(f"{what} exited ({p.returncode}): {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {START_TIMEOUT_S:.0f} s")


@dataclass
class S3Endpoint:
    url: str
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.url, key="testing", secret="testing", skip_instance_cache=True)

    def bucket(self, name: str) -> str:
        fs = self.fs()
        if not fs.exists(name):
            fs.mkdir(name)
        return name


def start_moto(tmp: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """moto's S3 server on a free loopback port: ``(process, endpoint URL)``."""
    port = free_port()
    env = {**os.environ, **(extra_env or {})}
    log = tmp / f"moto-{port}.log"
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], cwd=tmp, env=env, log=log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    try:
        _wait("moto server", up, [proc], [log])
    except BaseException:
        kill(proc)
        raise
    return proc, url


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A real S3 endpoint on 127.0.0.1 (moto server); ``AWS_*`` set for this session."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    tmp = tmp_path_factory.mktemp("moto")
    proc, url = start_moto(tmp)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
    }
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield S3Endpoint(url, env, [proc])
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        kill(proc)


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    root: Path

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            kill(p)


def start_dask_cluster(root: Path, n_workers: int = 2) -> DaskCluster:
    """``dask scheduler`` + ``n_workers`` ``dask worker`` processes on 127.0.0.1 (one thread
    each, no nanny, no dashboard), each in its own working directory under ``root``."""
    dask = [sys.executable, "-m", "dask"]  # the `dask` command of this interpreter
    sched_dir = root / "scheduler"
    sched_dir.mkdir(parents=True)
    sfile = sched_dir / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    sched = spawn(
        [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(sfile)],
        cwd=sched_dir, env=env, log=sched_dir / "log.txt",
    )
    procs, logs = [sched], [sched_dir / "log.txt"]
    try:
        _wait("dask scheduler", sfile.is_file, procs, logs)
        time.sleep(0.2)  # the file is written whole, but give it a moment
        address = json.loads(sfile.read_text())["address"]
        workers = []
        for i in range(n_workers):
            wdir = root / f"worker{i}"
            wdir.mkdir()
            w = spawn(
                [*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--local-directory", str(wdir / "dask"), "--name", f"w{i}"],
                cwd=wdir, env=env, log=wdir / "log.txt",
            )
            workers.append(w)
            procs.append(w)
            logs.append(wdir / "log.txt")
        cluster = DaskCluster(address, sched, workers, root)

        def all_up() -> bool:
            from distributed import Client

            try:
                with Client(address, timeout="2s", set_as_default=False) as c:
                    return len(c.scheduler_info(n_workers=-1)["workers"]) == n_workers
            except OSError:
                return False

        _wait("dask workers", all_up, procs, logs)
        return cluster
    except BaseException:
        for p in procs:
            kill(p)
        raise


@pytest.fixture(scope="module")
def dask_cluster(s3_endpoint: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A separate-process dask cluster (scheduler + 2 workers) that sees the S3 endpoint."""
    cluster = start_dask_cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield cluster
    finally:
        cluster.close()
