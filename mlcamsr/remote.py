"""Object storage: URLs, credentials, up-front checks, remote slides, the writer lease.

Everything a command needs to put slides or the store on an fsspec URL (``s3://``,
``gs://``, ``az://``, ...); tested against a real S3 endpoint (moto's server) on
127.0.0.1.

Credentials and endpoint come the standard way: the ``AWS_*`` environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...) that
botocore reads, or ``--storage-options JSON`` (fsspec's keyword arguments, e.g.
``{"endpoint_url": "http://127.0.0.1:9000", "key": "...", "secret": "..."}``), which
the CLI puts in ``MLCAMSR_STORAGE_OPTIONS`` so that DataLoader workers and local dask
workers see it too. Workers of a remote cluster need their own credentials (their
environment, an instance role), like any S3 client.

Processes: an fsspec filesystem holds an event loop and an aiohttp session that must
not cross ``fork``. Nothing here keeps a filesystem in a module global; every caller
builds one where it runs (fsspec's instance cache is per process id).

Writer lease (:class:`RemoteLock`): object stores have no atomic rename and no
``O_EXCL``; S3 has conditional writes (``If-None-Match: *`` creates only when absent,
``If-Match: ETAG`` replaces only the version read). The lease object holds an owner,
an expiry and a fencing token that only grows; it is renewed by a heartbeat while the
run lives and never deleted (a release marks it released), so the token stays
monotonic. :func:`check_fence` is what a worker calls before it writes a shard record.
The guarantees are written down in docs/scaling.md.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import fsspec

from mlcamsr.errors import InputError, StoreError

__all__ = [
    "ENV_OPTIONS",
    "LEASE_SECONDS",
    "RemoteLock",
    "RemotePath",
    "check_fence",
    "check_url",
    "filesystem",
    "has_conditional_writes",
    "is_url",
    "parse_storage_options",
    "resolve_remote_slides",
    "storage_options",
]

ENV_OPTIONS = "MLCAMSR_STORAGE_OPTIONS"
"""Environment variable holding ``--storage-options`` JSON for this process and its children."""

LEASE_SECONDS = 60.0
"""Lifetime of the remote writer lease; renewed every third of it while the run lives."""

# up-front checks must answer in seconds, not after botocore's default retries
_PROBE_CONFIG = {"connect_timeout": 3, "read_timeout": 10, "retries": {"max_attempts": 1}}


def is_url(path: str | os.PathLike[str] | None) -> bool:
    """True for a remote fsspec URL (``s3://b/k``); plain paths and ``file://`` are local."""
    if path is None:
        return False
    s = str(path)
    return "://" in s and not s.startswith("file://")


def parse_storage_options(text: str | None, *, where: str = "--storage-options") -> dict[str, Any]:
    """``--storage-options`` JSON as a dict (``{}`` for None/empty); InputError naming the fix."""
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{where} is not valid JSON ({exc.msg} at char {exc.pos}); give an object such as "
            '\'{"endpoint_url": "http://127.0.0.1:9000"}\''
        ) from None
    if not isinstance(value, dict):
        raise InputError(f'{where} must be a JSON object such as \'{{"anon": true}}\', got {text!r}')
    return value


def storage_options(explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fsspec options to use: ``MLCAMSR_STORAGE_OPTIONS`` merged with ``explicit`` (wins)."""
    out = parse_storage_options(os.environ.get(ENV_OPTIONS), where=ENV_OPTIONS)
    out.update(dict(explicit or {}))
    return out


def _protocol(url: str) -> str:
    return str(url).split("://", 1)[0].lower()


def has_conditional_writes(url: str) -> bool:
    """True for the object stores whose conditional writes the lease uses (S3 and S3-compatible)."""
    return is_url(url) and _protocol(url) in ("s3", "s3a")


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(fs, path)`` for ``url`` with :func:`storage_options`; built in the calling process.

    Raises:
        InputError: no fsspec implementation for the URL's scheme is installed.
    """
    _require_protocol(url)
    fs, path = fsspec.core.url_to_fs(url, **storage_options(options))
    return fs, path


def _require_protocol(url: str) -> None:
    proto = _protocol(url)
    try:
        fsspec.get_filesystem_class(proto)
    except ImportError as exc:
        raise InputError(
            f"{url}: the fsspec implementation for {proto}:// is not installed ({exc}); "
            f"install it (for S3: pip install 'mlcamsr[s3]')"
        ) from None
    except ValueError:
        raise InputError(
            f"{url}: no fsspec implementation knows the scheme {proto}://; use s3://, gs://, az://, "
            "a local path, or install the package that provides it"
        ) from None


def _endpoint(fs: Any) -> str:
    """The endpoint a filesystem talks to (for messages)."""
    ck = getattr(fs, "client_kwargs", None) or {}
    ep = ck.get("endpoint_url") or getattr(fs, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL")
    return str(ep) if ep else "the default endpoint"


def _probe_fs(url: str, options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """A fresh filesystem with short timeouts and no retries, for the up-front checks."""
    _require_protocol(url)
    opts = storage_options(options)
    if _protocol(url) in ("s3", "s3a"):
        cfg = dict(_PROBE_CONFIG)
        cfg.update(opts.get("config_kwargs", {}))
        opts["config_kwargs"] = cfg
    opts["skip_instance_cache"] = True
    return fsspec.core.url_to_fs(url, **opts)


def _explain(url: str, fs: Any, exc: BaseException, bucket: str) -> InputError:
    """One line for what went wrong talking to the object store, naming the URL and the fix."""
    ep = _endpoint(fs)
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if isinstance(exc, FileNotFoundError) or "nosuchbucket" in low or "bucket does not exist" in low:
        return InputError(
            f"{url}: bucket {bucket!r} does not exist at {ep}; create it (aws s3 mb s3://{bucket}) "
            "or fix the URL"
        )
    if any(k in low for k in ("could not connect", "connecttimeout", "connection refused",
                              "name or service", "endpointconnectionerror")):
        return InputError(
            f"{url}: cannot reach {ep} ({type(exc).__name__}); check AWS_ENDPOINT_URL or "
            "--storage-options endpoint_url, and that the server is running"
        )
    if isinstance(exc, PermissionError) or any(
        k in low for k in ("accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden", "(403)")
    ):
        return InputError(
            f"{url}: {ep} refused the credentials ({str(exc).splitlines()[0][:120]}); check "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --storage-options key/secret"
        )
    if "credentials" in low and ("unable to locate" in low or "nocredentials" in low):
        return InputError(
            f"{url}: no credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or pass "
            '--storage-options \'{"key": ..., "secret": ...}\' (or {"anon": true} for a public bucket)'
        )
    if any(k in low for k in ("connect", "timeout", "timed out", "refused", "name or service", "endpoint")):
        return InputError(
            f"{url}: cannot reach {ep} ({type(exc).__name__}); check AWS_ENDPOINT_URL or "
            "--storage-options endpoint_url, and that the server is running"
        )
    return InputError(f"{url}: cannot access it at {ep} ({text.splitlines()[0][:160]}); check the URL and credentials")


def check_url(
    url: str,
    options: Mapping[str, Any] | None = None,
    *,
    what: str,
    must_exist: bool,
) -> None:
    """Fail fast, before anything is written: the scheme is installed, the endpoint answers,
    the credentials are accepted, the bucket exists and (``must_exist``) so does ``url``.

    Raises:
        InputError: one line naming ``what`` (``--slides``, ``--out``...), the URL and the fix.
    """
    fs, path = _probe_fs(url, options)
    bucket = path.split("/", 1)[0]
    try:
        if _protocol(url) in ("s3", "s3a"):
            fs.call_s3("head_bucket", Bucket=bucket)  # one request: endpoint, credentials, bucket
        if must_exist and not fs.exists(path):
            raise InputError(f"{what} {url} does not exist; check the URL")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore/aiohttp raise many types
        err = _explain(url, fs, exc, bucket)
        raise InputError(f"{what} {err}") from None


# ----------------------------------------------------------------------------- slides


class RemotePath:
    """A slide in object storage, standing in for ``pathlib.Path`` where slides are opened.

    ``str()`` is the URL; ``name``/``suffix``/``stem`` like a path; ``stat().st_size`` and
    ``etag`` from one listing (no extra request). Picklable: plain strings and numbers.
    """

    def __init__(self, url: str, size: int | None = None, etag: str | None = None) -> None:
        self.url = str(url)
        self._size = size
        self.etag = etag

    @property
    def name(self) -> str:
        return PurePosixPath(urlparse(self.url).path).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    def _info(self) -> None:
        fs, path = filesystem(self.url)
        info = fs.info(path)
        self._size = int(info.get("size", 0))
        self.etag = str(info.get("ETag", "") or "").strip('"') or None

    @property
    def size(self) -> int:
        if self._size is None:
            self._info()
        return int(self._size or 0)

    def stat(self) -> os.stat_result:
        return os.stat_result((0, 0, 0, 0, 0, 0, self.size, 0, 0, 0))

    def exists(self) -> bool:
        return True

    def is_dir(self) -> bool:
        return False

    def is_file(self) -> bool:
        return True

    def resolve(self) -> RemotePath:
        return self

    def rglob(self, pattern: str) -> list[Any]:
        return []

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:  # tifffile/tiffslide accept it; never a local file
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def open_remote_binary(url: str) -> Any:
    """A seekable binary file over ``url`` read by byte range (fsspec, block cache)."""
    fs, path = filesystem(url)
    return fs.open(path, "rb", block_size=2**20, cache_type="blockcache")


def resolve_remote_slides(names: list[tuple[str, int]], url: str) -> dict[str, RemotePath]:
    """Map slide names (``(name, first row)``) to objects under the prefix ``url``.

    A name matches ``PREFIX/name``, ``PREFIX/name + suffix``, or the one object with that
    stem, as for a local folder. One listing; sizes and ETags come from it.

    Raises:
        InputError: names not found (listed) or ambiguous.
    """
    check_url(url, what="--slides", must_exist=False)
    fs, path = filesystem(url)
    prefix = path.rstrip("/")
    try:
        listing = fs.find(prefix, detail=True)
    except FileNotFoundError:
        listing = {}
    scheme = _protocol(url)
    objects: dict[str, RemotePath] = {}
    for key, info in listing.items():
        if info.get("type", "file") != "file":
            continue
        rel = key[len(prefix) + 1 :] if key.startswith(prefix + "/") else key
        etag = str(info.get("ETag", "") or "").strip('"') or None
        objects[rel] = RemotePath(f"{scheme}://{key}", int(info.get("size", 0)), etag)
    if not objects:
        raise InputError(f"--slides {url} holds no objects; check the URL (a prefix such as s3://bucket/slides/)")
    by_stem: dict[str, list[str]] = {}
    for rel in objects:
        by_stem.setdefault(PurePosixPath(rel).stem, []).append(rel)
    out: dict[str, RemotePath] = {}
    missing: list[tuple[str, int]] = []
    for name, row in names:
        hit = objects.get(name)
        if hit is None:
            cands = [r for r in by_stem.get(name, []) if PurePosixPath(r).parent == PurePosixPath(name).parent]
            if len(cands) > 1:
                raise InputError(
                    f"slide {name!r} (row {row}) matches {len(cands)} objects under {url} "
                    f"({', '.join(sorted(cands)[:3])}); name it with its suffix"
                )
            hit = objects[cands[0]] if cands else None
        if hit is None:
            missing.append((name, row))
            continue
        same = next((n for n, q in out.items() if q == hit), None)
        if same is not None:
            raise InputError(
                f"slide names {same!r} and {name!r} (row {row}) are the same object {hit}; "
                "use one name for it in the coords file"
            )
        out[name] = hit
    if missing:
        shown = ", ".join(repr(n) for n, _ in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(
            f"{len(missing)} slide(s) in the coords file not found under {url}: {shown}{more} "
            f"(first at row {missing[0][1]}); fix the names or --slides"
        )
    return out


# ----------------------------------------------------------------------------- the lease


class RemoteLock:
    """The writer lease of a store on object storage (see the module docstring).

    The lease object at ``<store>/mlcamsr.lock`` is JSON: ``owner`` (uuid), ``host``,
    ``pid``, ``token`` (fencing token, grows by one per acquisition), ``expires`` (epoch
    s), ``released``. :meth:`acquire` creates it with ``If-None-Match: *`` or takes over a
    released / expired one (or one of a dead process on this host) with ``If-Match``;
    exactly one of two racing writers wins. A heartbeat renews it every third of
    ``seconds``; a renewal that fails (someone took the lease) marks it ``lost``.
    """

    def __init__(self, url: str, *, seconds: float = LEASE_SECONDS, options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/") + "/mlcamsr.lock"
        self.seconds = float(seconds)
        self.options = dict(options or {})
        self.owner = uuid.uuid4().hex
        self.token = 0
        self.lost = False
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _fs(self) -> tuple[Any, str]:
        return filesystem(self.url, self.options)

    def _body(self, released: bool = False) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "token": self.token,
                "expires": time.time() + self.seconds,
                "released": released,
            }
        ).encode()

    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        fs, path = self._fs()
        try:
            fs.invalidate_cache(path)  # the listing cache must not answer for a lease
            # ETag first, body second: the ETag is never newer than the body read, so a
            # put conditioned on it fails when the lease changed in between (safe side)
            info = fs.info(path)
            data = fs.cat_file(path)
        except FileNotFoundError:
            return None, None
        try:
            return json.loads(data), str(info.get("ETag"))
        except ValueError:
            return {}, str(info.get("ETag"))

    def _put(self, body: bytes, *, etag: str | None) -> str:
        """Conditional put: create when ``etag`` is None, else replace only that version."""
        fs, path = self._fs()
        if etag is None:
            out = fs.pipe_file(path, body, mode="create")
        else:
            out = fs.pipe_file(path, body, IfMatch=etag)
        tag = (out or {}).get("ETag") if isinstance(out, dict) else None
        if tag is None:
            tag = str(fs.info(path).get("ETag"))
        return str(tag)

    @staticmethod
    def _dead_here(info: Mapping[str, Any]) -> bool:
        if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
            return False
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def acquire(self) -> RemoteLock:
        """Take the lease or raise :class:`StoreError` naming the holder."""
        for _ in range(5):
            info, etag = self._read()
            if info is not None and info and not info.get("released") and float(info.get("expires", 0)) > time.time():
                if not self._dead_here(info):
                    left = float(info.get("expires", 0)) - time.time()
                    raise StoreError(
                        f"{self.url.rsplit('/', 1)[0]} is in use by another run (pid {info.get('pid')} on "
                        f"{info.get('host')}, lease renewed until {left:.0f} s from now); wait for it, "
                        f"or delete {self.url} if no run is active"
                    )
            self.token = int((info or {}).get("token", 0)) + 1
            try:
                self._etag = self._put(self._body(), etag=None if info is None else etag)
            except (FileExistsError, OSError) as exc:
                if isinstance(exc, FileExistsError) or "pre-condition" in str(exc).lower() or "precondition" in str(exc).lower():
                    time.sleep(0.2)  # another writer won the race: look again
                    continue
                raise
            self._stop.clear()
            self._thread = threading.Thread(target=self._heartbeat, name="mlcamsr-lease", daemon=True)
            self._thread.start()
            return self
        raise StoreError(f"could not take the lease {self.url}; another run is starting, try again")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self._etag = self._put(self._body(), etag=self._etag)
            except Exception:  # noqa: BLE001 - someone else holds it now: we are fenced off
                self.lost = True
                return

    def check(self) -> None:
        """Raise :class:`StoreError` when this lease was lost (another run took the store)."""
        if self.lost:
            raise StoreError(f"{self.url}: the lease was taken by another run; this run stops writing")

    def release(self) -> None:
        """Stop the heartbeat and mark the lease released (the object stays: the token grows)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._etag is not None and not self.lost:
            try:
                self._put(self._body(released=True), etag=self._etag)
            except Exception:  # noqa: BLE001 - lost in the meantime: nothing of ours to release
                pass
            self._etag = None

    def __enter__(self) -> RemoteLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_fence(store_url: str, token: int, options: Mapping[str, Any] | None = None) -> None:
    """Before a worker writes: the store's lease still carries ``token`` and has at least half
    its life left. Raises :class:`StoreError` otherwise (the task writes no record; a rerun
    redoes the shard)."""
    lock = RemoteLock(store_url, options=options)
    info, _ = lock._read()
    if not info or int(info.get("token", -1)) != int(token) or info.get("released"):
        raise StoreError(f"{lock.url}: fencing token {token} is stale (another run holds the store); not writing")
    if float(info.get("expires", 0)) - time.time() < LEASE_SECONDS / 2:
        raise StoreError(f"{lock.url}: the lease is about to expire; not writing")


def clear_prefix(url: str, *, keep: str, options: Mapping[str, Any] | None = None) -> None:
    """Delete every object under ``url`` except ``url/keep`` (the lease we hold)."""
    fs, path = filesystem(url, options)
    prefix = path.rstrip("/")
    try:
        keys = fs.find(prefix)
    except FileNotFoundError:
        return
    doomed = [k for k in keys if k != f"{prefix}/{keep}"]
    if doomed:
        fs.rm(doomed)
    fs.invalidate_cache(prefix)


class RemoteDir:
    """An object-storage prefix standing in for a slides folder: ``prefix / name`` is a
    :class:`RemotePath`; ``str()`` is the URL with a trailing ``/``."""

    def __init__(self, url: str) -> None:
        self.url = str(url).rstrip("/")

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(f"{self.url}/{name}")

    def is_dir(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.url + "/"

    def __repr__(self) -> str:
        return f"RemoteDir({self.url!r})"


def list_remote_slides(prefix: RemoteDir, suffixes: tuple[str, ...], include: list[str] | None = None) -> list[str]:
    """Names (relative to ``prefix``, POSIX, sorted) of the objects under it that end in one of
    ``suffixes`` (lower case), or that match a glob of ``include``. One listing.

    Raises:
        InputError: endpoint, credentials or bucket problems (see :func:`check_url`).
    """
    url = str(prefix)
    check_url(url, what="--slides", must_exist=False)
    fs, path = filesystem(url)
    base = path.rstrip("/")
    try:
        keys = fs.find(base)
    except FileNotFoundError:
        keys = []
    names = sorted(k[len(base) + 1 :] for k in keys if k.startswith(base + "/"))
    if include:
        return [n for n in names if any(fnmatch.fnmatch(n, pat) for pat in include)]
    return [n for n in names if n.lower().endswith(suffixes)]
