"""Nothing listens on a network interface unless asked (SPEC "Integrity and exposure")."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from mlcamsr.extract import extract


def _listening(pid: int) -> set[tuple[str, int]]:
    """``(address, port)`` of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                addr, port = f[1].split(":")
                loop = addr in ("0100007F", "00000000000000000000000001000000") or addr.endswith("0100007F")
                out.add(("127.0.0.1" if loop else addr, int(port, 16)))
    return out


def _during_extract(synth_dir: Path, out: Path, **kw) -> set[tuple[str, int]]:
    seen: set[tuple[str, int]] = set()
    done = threading.Event()

    def run() -> None:
        try:
            extract(synth_dir, synth_dir / "coords.csv", out, size=128, workers=2, progress=False,
                    hash_slides=False, **kw)
        finally:
            done.set()

    t = threading.Thread(target=run)
    t.start()
    while not done.is_set():
        seen |= _listening(os.getpid())
        time.sleep(0.02)
    t.join()
    return seen


def test_extract_listens_on_no_network_interface_and_dashboard_is_opt_in_on_loopback(synth_dir, tmp_path):
    seen = _during_extract(synth_dir, tmp_path / "a.zarr")
    assert seen and {a for a, _ in seen} == {"127.0.0.1"}, seen  # was 0.0.0.0:8787
    assert 8787 not in {p for _, p in seen}
    seen = _during_extract(synth_dir, tmp_path / "b.zarr", dashboard=True)  # 8787, or free port
    assert {a for a, _ in seen} == {"127.0.0.1"}, seen
