"""Deterministic train/test split written into the store's table (SPEC "mlcamsr split").

Only ``kept`` rows get a split; every other row keeps an empty ``split``.

* ``by="slide"`` (default): every slide lies wholly on one side. The test side is the
  subset of slides whose kept-patch count is closest to ``n_kept * test / (train + test)``
  (exact subset-sum by dynamic programming; with ``stratify`` a deterministic local search
  over per-label counts). Ties between equally good subsets are broken by a
  seed-shuffled slide order, so another seed gives another, equally balanced, split.
* ``by="patch"``: the paper's random split: a seeded permutation of the kept rows
  (per stratum with ``stratify``), ``round(n * test / (train + test))`` rows to test.

The arguments are recorded in the root attributes (``mlcamsr.split``). Rerunning with
the same arguments recomputes the same split and writes nothing; other arguments are
refused unless ``overwrite=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlcamsr.errors import InputError, StoreError

TRAIN, TEST = "train", "test"
BY_CHOICES = ("slide", "patch")


@dataclass(frozen=True)
class SplitResult:
    """What a split did. ``achieved`` is train/test (e.g. 5.0 for a perfect 5:1)."""

    n_train: int
    n_test: int
    slides_train: int
    slides_test: int
    target: float
    achieved: float
    changed: bool
    args: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the CLI."""
        verb = "wrote" if self.changed else "unchanged,"
        return (
            f"split {verb} train {self.n_train} / test {self.n_test} patches "
            f"({self.slides_train} / {self.slides_test} slides); "
            f"achieved ratio {self.achieved:.2f}:1, asked {self.target:g}:1"
        )


def parse_ratio(text: str | Sequence[float]) -> tuple[float, float]:
    """``"5:1"`` -> ``(5.0, 1.0)``; both parts must be positive numbers."""
    if isinstance(text, str):
        parts = text.split(":")
        try:
            vals = tuple(float(p) for p in parts)
        except ValueError:
            vals = ()
    else:
        vals = tuple(float(p) for p in text)
    if len(vals) != 2 or not all(np.isfinite(v) and v > 0 for v in vals):
        raise InputError(
            f"--ratio {text!r} is not TRAIN:TEST with two positive numbers; use e.g. --ratio 5:1"
        )
    if max(vals) / min(vals) > MAX_RATIO:  # 1e308:1e-308 overflows to inf; one side empty anyway
        raise InputError(
            f"--ratio {text!r}: one side would get less than 1/{MAX_RATIO:g} of the patches; "
            "use e.g. --ratio 5:1"
        )
    return vals[0], vals[1]


MAX_RATIO = 1e6
"""Largest TRAIN:TEST (or TEST:TRAIN) ratio ``parse_ratio`` accepts."""


def assign_split(
    table: pd.DataFrame,
    *,
    ratio: tuple[float, float] = (5.0, 1.0),
    seed: int = 0,
    by: str = "slide",
    stratify: str | None = None,
) -> pd.Series:
    """Return the ``split`` column (``"train"``/``"test"``/``""``) for ``table``; pure function."""
    if by not in BY_CHOICES:
        raise InputError(f"--by {by!r} is not one of {', '.join(BY_CHOICES)}")
    if "status" not in table.columns or "slide" not in table.columns:
        raise StoreError("the store's table has no 'status'/'slide' columns; is it an mlcamsr store?")
    kept = (table["status"] == "kept").to_numpy()
    n_kept = int(kept.sum())
    if n_kept < 2:
        raise InputError(
            f"the store has {n_kept} kept patch(es); a split needs at least 2 "
            "(run extract with more coords or looser QC thresholds)"
        )
    if stratify is not None and stratify not in table.columns:
        raise InputError(
            f"--stratify {stratify!r} is not a column of the table "
            f"(columns: {', '.join(map(str, table.columns))})"
        )
    train_w, test_w = ratio
    frac = test_w / (train_w + test_w)
    rng = np.random.default_rng(seed)
    kept_pos = np.flatnonzero(kept)
    strata = (
        table[stratify].astype(str).to_numpy()[kept_pos]
        if stratify is not None
        else np.zeros(n_kept, dtype=object)
    )
    is_test = np.zeros(n_kept, dtype=bool)
    if by == "patch":
        for lab in sorted(set(strata.tolist()), key=str):
            members = np.flatnonzero(strata == lab)
            n_test = int(round(len(members) * frac))
            is_test[rng.permutation(members)[:n_test]] = True
        if not is_test.any():
            is_test[rng.permutation(n_kept)[0]] = True
        if is_test.all():
            is_test[rng.permutation(n_kept)[0]] = False
    else:
        slides = table["slide"].astype(str).to_numpy()[kept_pos]
        names = sorted(set(slides.tolist()))
        if len(names) < 2:
            raise InputError(
                f"all kept patches come from one slide ({names[0]}); --by slide needs at "
                "least 2 slides; use --by patch"
            )
        order = [names[i] for i in rng.permutation(len(names))]
        labels = sorted(set(strata.tolist()), key=str)
        counts = np.array(
            [[int(np.sum((slides == s) & (strata == lab))) for lab in labels] for s in order]
        )
        target = counts.sum(axis=0) * frac
        if len(labels) == 1:
            chosen = _closest_subset(counts[:, 0], float(target[0]))
        else:
            chosen = _local_search(counts, target)
        test_slides = {order[i] for i in np.flatnonzero(chosen)}
        is_test = np.array([s in test_slides for s in slides])
    out = pd.Series([""] * len(table), index=table.index, dtype=object)
    out.iloc[kept_pos] = np.where(is_test, TEST, TRAIN)
    return out


def _closest_subset(sizes: np.ndarray, target: float) -> np.ndarray:
    """Subset of ``sizes`` (not empty, not all) whose sum is closest to ``target``.

    Exact DP over reachable sums; among equally close sums the smaller one wins (the
    test side never grows past the ratio on a tie), and the subset found is the one that
    uses the earliest slides of the (seed-shuffled) order.
    """
    n, total = len(sizes), int(sizes.sum())
    # reach[i] bit t: sum t reachable with the first i slides (Python ints as bitsets:
    # n * total bits, e.g. 1,400 slides x 100,000 patches = 17.5 MB)
    reach = [1]
    for w in sizes:
        reach.append(reach[-1] | (reach[-1] << int(w)))
    final = reach[n]
    sums = np.array([t for t in range(1, total) if (final >> t) & 1], dtype=np.int64)
    best = int(sums[np.lexsort((sums, np.abs(sums - target)))][0])
    chosen = np.zeros(n, dtype=bool)
    t = best
    # walk back: skip slide i whenever the rest of the sum is reachable without it, so
    # the subset prefers the earliest slides of the (seed-shuffled) order
    for i in range(n - 1, -1, -1):
        if (reach[i] >> t) & 1:
            continue
        chosen[i] = True
        t -= int(sizes[i])
    return chosen


def _local_search(counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-label balanced subset by greedy fill then single flips/swaps until no gain."""
    n = len(counts)

    def cost(sel: np.ndarray) -> float:
        if not sel.any() or sel.all():
            return np.inf
        return float(np.abs(counts[sel].sum(axis=0) - target).sum())

    sel = np.zeros(n, dtype=bool)
    for i in range(n):
        trial = sel.copy()
        trial[i] = True
        if np.abs(counts[trial].sum(axis=0) - target).sum() < np.abs(
            counts[sel].sum(axis=0) - target
        ).sum():
            sel = trial
    if not sel.any():
        sel[int(np.argmin(np.abs(counts.sum(axis=1) - target.sum())))] = True
    best = cost(sel)
    improved = True
    while improved:
        improved = False
        for i in range(n):
            trial = sel.copy()
            trial[i] = ~trial[i]
            c = cost(trial)
            if c < best:
                sel, best, improved = trial, c, True
        for i in np.flatnonzero(sel).tolist():
            for j in np.flatnonzero(~sel).tolist():
                trial = sel.copy()
                trial[i], trial[j] = False, True
                c = cost(trial)
                if c < best:
                    sel, best, improved = trial, c, True
                    break
            if improved:
                break
    return sel


def split(
    store_path: Any,
    *,
    ratio: str | Sequence[float] = "5:1",
    seed: int = 0,
    by: str = "slide",
    stratify: str | None = None,
    overwrite: bool = False,
) -> SplitResult:
    """Write the ``split`` column of the store at ``store_path``; see the module docstring."""
    from mlcamsr.store import open_store

    train_w, test_w = parse_ratio(ratio)
    args = {
        "ratio": [train_w, test_w],
        "seed": int(seed),
        "by": by,
        "stratify": stratify,
    }
    store = open_store(store_path, mode="r+")
    table = store.table
    new = assign_split(table, ratio=(train_w, test_w), seed=seed, by=by, stratify=stratify)

    prev_args = _split_attrs(store)
    old = (
        table["split"].fillna("").astype(str)
        if "split" in table.columns
        else pd.Series([""] * len(table), index=table.index)
    )
    has_old = bool((old != "").any())
    if has_old and prev_args is not None and prev_args != args and not overwrite:
        raise InputError(
            f"{store_path} is already split with {_fmt(prev_args)}; "
            f"pass --overwrite to replace it with {_fmt(args)}"
        )
    same = old.astype(str).tolist() == new.astype(str).tolist()
    if has_old and prev_args is None and not overwrite and not same:
        raise InputError(
            f"{store_path} already has a split column made without recorded arguments; "
            "pass --overwrite to replace it"
        )
    changed = not same
    if changed or prev_args != args:
        with store.lock():
            if changed:
                out = table.copy()
                out["split"] = new
                store.write_table(out)
            if prev_args != args:
                _set_split_attrs(store, args)

    kept = table["status"] == "kept"
    n_test = int((new == TEST).sum())
    n_train = int((new == TRAIN).sum())
    slides = table.loc[kept, "slide"].astype(str)
    return SplitResult(
        n_train=n_train,
        n_test=n_test,
        slides_train=int(slides[new[kept] == TRAIN].nunique()),
        slides_test=int(slides[new[kept] == TEST].nunique()),
        target=train_w / test_w,
        achieved=n_train / n_test if n_test else float("inf"),
        changed=changed,
        args=args,
    )


def _fmt(args: dict[str, Any]) -> str:
    r = args.get("ratio", ["?", "?"])
    s = f"--ratio {r[0]:g}:{r[1]:g} --seed {args.get('seed')} --by {args.get('by')}"
    if args.get("stratify"):
        s += f" --stratify {args['stratify']}"
    return s


def _split_attrs(store: Any) -> dict[str, Any] | None:
    got = store.attrs.get("split")
    return dict(got) if got else None


def _set_split_attrs(store: Any, args: dict[str, Any]) -> None:
    """Record the split arguments under the root attribute ``mlcamsr.split``."""
    store.update_attrs(split=args)


__all__ = ["SplitResult", "assign_split", "parse_ratio", "split"]
