"""A running dask.distributed cluster: the up-front check of ``--scheduler ADDRESS``.

Extract's tasks are plain data (:func:`mlcamsr.extract.run_task`), so any cluster whose
workers import this package and see the slides and the store at the same paths or URLs
runs them: ``dask scheduler`` + ``dask worker`` processes, dask-jobqueue on SLURM, the
dask Kubernetes operator (docs/scaling.md).
"""

from __future__ import annotations

import logging

from mlcamsr.errors import InputError

__all__ = ["check_scheduler"]

SCHEDULER_TIMEOUT_S = 5.0
"""How long the up-front check waits for the scheduler to answer."""


def check_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT_S) -> int:
    """Connect to the scheduler at ``address`` and return its number of workers.

    Raises:
        InputError: one line naming the address and the fix when nothing answers there
            within ``timeout`` s, the address is malformed, or the cluster has no workers.
    """
    from distributed import Client

    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its own connection-retry warnings; the one line says it
    try:
        with Client(address, timeout=f"{timeout}s", set_as_default=False) as client:
            workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, ValueError for a bad address
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise InputError(
            f"--scheduler {address}: no dask scheduler answers there within {timeout:g} s "
            f"({type(exc).__name__}: {first}); start one (`dask scheduler`) or fix the address "
            "(tcp://HOST:PORT)"
        ) from None
    finally:
        quiet.setLevel(level)
    if workers == 0:
        raise InputError(
            f"--scheduler {address}: the scheduler has no workers; start some (`dask worker {address}`)"
        )
    return workers
