"""Lesion annotations: CAMELYON ASAP XML read/write and patch labelling.

ASAP XML (the format of CAMELYON16 ``lesion_annotations/*.xml`` and CAMELYON17
``annotations/*.xml``)::

    <ASAP_Annotations>
      <Annotations>
        <Annotation Name="_0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
          <Coordinates>
            <Coordinate Order="0" X="61400.5" Y="112010.25" />
            ...
      <AnnotationGroups>
        <Group Name="_0" PartOfGroup="None" Color="#FF0000"><Attributes /></Group>

Coordinates are level-0 pixels (floats, continuous: pixel ``i`` covers ``[i, i+1)``).
Some CAMELYON files write decimals with a comma (``X="1234,5"``); both are read.

Groups (``PartOfGroup``, case-insensitive):
- tumour: ``Tumor``/``Tumour``, ``_0``, ``_1`` (CAMELYON16), ``metastases`` (CAMELYON17);
- exclusion: ``_2`` (CAMELYON16 non-tumour regions drawn inside lesions), ``Exclusion``;
  subtracted from the tumour area;
- anything else is kept in ``SlideAnnotations.ignored_groups`` and not used.

Invalid polygons (self-intersections, as hand-drawn lesions often have) are
repaired with :func:`shapely.make_valid`; annotations without area (dots,
fewer than three distinct points) are skipped and counted in ``skipped``.

Labelling rule (documented in :meth:`SlideAnnotations.label`): the tumour
fraction is the area of (tumour minus exclusion) inside the patch square divided
by the square's area; a patch is ``"tumor"`` when that fraction is above
``threshold`` (default 0: any tumour in the square), else ``"normal"``. With the
default, ``normal`` guarantees a tumour-free square (the clean negative class of
CAMELYON patch datasets); ``tumor_frac`` is always stored so a stricter rule can
be applied later (e.g. ``tumor_frac >= 0.5``).
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from mlcamsr.errors import InputError

TUMOR_GROUPS = frozenset({"tumor", "tumour", "_0", "_1", "metastases", "metastasis"})
EXCLUSION_GROUPS = frozenset({"_2", "exclusion", "exclude", "excluded", "non-tumor"})

#: slide file extensions stripped when matching a slide name to its XML
SLIDE_EXTENSIONS = (
    ".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu",
    ".svslide", ".dcm", ".ome.tif", ".ome.tiff",
)

_GROUP_COLORS = {"tumor": "#F4FA58", "exclusion": "#64FE2E", "other": "#FF0000"}


def group_kind(group: str) -> str:
    """``"tumor"``, ``"exclusion"`` or ``"other"`` for an ASAP ``PartOfGroup`` name."""
    g = (group or "").strip().lower()
    if g in TUMOR_GROUPS:
        return "tumor"
    if g in EXCLUSION_GROUPS:
        return "exclusion"
    return "other"


# --------------------------------------------------------------------------- write


def write_asap_xml(
    path: str | os.PathLike[str],
    polygons: Sequence[tuple[str, np.ndarray]],
) -> Path:
    """Write polygons as CAMELYON ASAP XML.

    Args:
        path: output ``.xml`` file (written atomically: temp file then rename).
        polygons: ``(group, points)`` pairs; ``group`` is the ``PartOfGroup`` name
            (``"Tumor"``, ``"_0"``, ``"_2"``, ``"metastases"`` ...), ``points`` an
            ``(N, 2)`` float array of level-0 pixel ``(x, y)``, N >= 3, open ring
            (the first point is not repeated).

    Returns:
        The path written.
    """
    path = Path(path)
    root = ET.Element("ASAP_Annotations")
    anns = ET.SubElement(root, "Annotations")
    groups: dict[str, None] = {}
    for i, (group, pts) in enumerate(polygons):
        pts = np.asarray(pts, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise ValueError(f"polygon {i} ({group!r}) must be an (N>=3, 2) array, got {pts.shape}")
        if not np.isfinite(pts).all():
            raise ValueError(f"polygon {i} ({group!r}) has non-finite coordinates")
        groups.setdefault(group, None)
        ann = ET.SubElement(
            anns,
            "Annotation",
            Name=f"Annotation {i}",
            Type="Polygon",
            PartOfGroup=group,
            Color=_GROUP_COLORS[group_kind(group)],
        )
        coords = ET.SubElement(ann, "Coordinates")
        for order, (x, y) in enumerate(pts):
            ET.SubElement(coords, "Coordinate", Order=str(order), X=repr(float(x)), Y=repr(float(y)))
    grp = ET.SubElement(root, "AnnotationGroups")
    for name in groups:
        g = ET.SubElement(
            grp, "Group", Name=name, PartOfGroup="None", Color=_GROUP_COLORS[group_kind(name)]
        )
        ET.SubElement(g, "Attributes")
    ET.indent(root, space="\t")
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.write(b"\n")
        # mkstemp makes the file 0600; give it the mode any new file gets here (umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- read


def _parse_coord(value: str | None, xml_path: Path, ann_name: str, axis: str) -> float:
    if value is None:
        raise InputError(
            f"{xml_path}: annotation {ann_name!r} has a Coordinate without {axis}; "
            "fix or remove that coordinate"
        )
    s = value.strip()
    if "," in s and "." not in s:  # CAMELYON files written with a decimal comma
        s = s.replace(",", ".")
    try:
        v = float(s)
    except ValueError:
        raise InputError(
            f"{xml_path}: annotation {ann_name!r} has a non-numeric {axis}={value!r}; "
            "coordinates must be level-0 pixel numbers"
        ) from None
    if not np.isfinite(v):
        raise InputError(f"{xml_path}: annotation {ann_name!r} has {axis}={value!r}; must be finite")
    return v


def _polygonal_parts(geom: BaseGeometry) -> list[Polygon]:
    """The non-empty polygons inside any geometry (make_valid may return collections)."""
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom] if geom.area > 0 else []
    if isinstance(geom, MultiPolygon):
        return [g for g in geom.geoms if g.area > 0]
    if hasattr(geom, "geoms"):
        out: list[Polygon] = []
        for g in geom.geoms:
            out.extend(_polygonal_parts(g))
        return out
    return []


@dataclass
class Annotation:
    """One annotation as read: its name, group, kind and raw points (N, 2) level-0 px."""

    name: str
    group: str
    kind: str
    points: np.ndarray


@dataclass
class SlideAnnotations:
    """The lesions of one slide, indexed for fast patch labelling.

    Attributes:
        path: the XML read (None for an empty set).
        annotations: every annotation with area, as read.
        tumor: tumour area (union of tumour groups minus exclusion groups), a
            shapely (Multi)Polygon in level-0 px; empty when the slide has none.
        exclusion: union of the exclusion groups.
        pieces: ``tumor`` split into disjoint polygons, indexed by ``tree``.
        ignored_groups: counts of annotations in groups that are neither tumour
            nor exclusion.
        skipped: annotations without area (dots, < 3 distinct points).
        repaired: annotations that were invalid and repaired by ``make_valid``.
    """

    path: Path | None
    annotations: list[Annotation] = field(default_factory=list)
    tumor: BaseGeometry = field(default_factory=Polygon)
    exclusion: BaseGeometry = field(default_factory=Polygon)
    pieces: list[Polygon] = field(default_factory=list)
    ignored_groups: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    repaired: int = 0
    tree: STRtree | None = None

    @classmethod
    def empty(cls) -> SlideAnnotations:
        """No lesions (a slide with no XML, e.g. a CAMELYON16 ``normal_*`` slide)."""
        return cls(path=None)

    @classmethod
    def from_polygons(
        cls,
        polygons: Iterable[tuple[str, np.ndarray]],
        *,
        path: Path | None = None,
    ) -> SlideAnnotations:
        """Build from ``(group, (N, 2) points)`` pairs (the same input as :func:`write_asap_xml`)."""
        anns = [
            Annotation(f"Annotation {i}", g, group_kind(g), np.asarray(p, dtype=np.float64))
            for i, (g, p) in enumerate(polygons)
        ]
        return cls._build(anns, path=path)

    @classmethod
    def _build(cls, anns: list[Annotation], *, path: Path | None) -> SlideAnnotations:
        tumor_parts: list[BaseGeometry] = []
        excl_parts: list[BaseGeometry] = []
        ignored: Counter[str] = Counter()
        kept: list[Annotation] = []
        skipped = repaired = 0
        for a in anns:
            pts = a.points
            if len(pts) < 3 or len(np.unique(pts, axis=0)) < 3:
                skipped += 1
                continue
            poly: BaseGeometry = Polygon(pts)
            if not poly.is_valid:
                poly = shapely.make_valid(poly)
                repaired += 1
            parts = _polygonal_parts(poly)
            if not parts:
                skipped += 1
                continue
            kept.append(a)
            geom = shapely.union_all(parts)
            if a.kind == "tumor":
                tumor_parts.append(geom)
            elif a.kind == "exclusion":
                excl_parts.append(geom)
            else:
                ignored[a.group] += 1
        tumor = shapely.union_all(tumor_parts) if tumor_parts else Polygon()
        exclusion = shapely.union_all(excl_parts) if excl_parts else Polygon()
        if not exclusion.is_empty and not tumor.is_empty:
            tumor = tumor.difference(exclusion)
        pieces = _polygonal_parts(tumor)
        tree = STRtree(pieces) if pieces else None
        return cls(
            path=path,
            annotations=kept,
            tumor=tumor,
            exclusion=exclusion,
            pieces=pieces,
            ignored_groups=dict(ignored),
            skipped=skipped,
            repaired=repaired,
            tree=tree,
        )

    # ---- queries

    def __len__(self) -> int:
        return len(self.annotations)

    @property
    def has_tumor(self) -> bool:
        return bool(self.pieces)

    @property
    def tumor_area(self) -> float:
        """Tumour area in level-0 px^2."""
        return float(self.tumor.area) if not self.tumor.is_empty else 0.0

    def tumor_fraction(self, cx: float, cy: float, half_width: float) -> float:
        """Fraction of the square ``[cx-hw, cx+hw) x [cy-hw, cy+hw)`` (level-0 px) that is tumour."""
        if half_width <= 0:
            raise ValueError(f"half_width must be > 0, got {half_width}")
        if self.tree is None:
            return 0.0
        sq = box(cx - half_width, cy - half_width, cx + half_width, cy + half_width)
        idx = self.tree.query(sq, predicate="intersects")
        if len(idx) == 0:
            return 0.0
        cand = [self.pieces[i] for i in idx]
        inter = shapely.area(shapely.intersection(cand, sq)).sum()
        return float(min(1.0, max(0.0, inter / sq.area)))

    def label(
        self, cx: float, cy: float, half_width: float, *, threshold: float = 0.0
    ) -> tuple[str, float]:
        """Label the square of side ``2 * half_width`` level-0 px centred on ``(cx, cy)``.

        Returns ``(label, tumor_frac)``: ``"tumor"`` when ``tumor_frac > threshold``
        (default 0: any tumour inside the square), else ``"normal"``.
        """
        frac = self.tumor_fraction(cx, cy, half_width)
        return ("tumor" if frac > threshold else "normal"), frac

    def label_many(
        self,
        cx: np.ndarray,
        cy: np.ndarray,
        half_width: float | np.ndarray,
        *,
        threshold: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`label`: arrays of labels (object) and tumour fractions (float64)."""
        cx = np.asarray(cx, dtype=np.float64)
        cy = np.asarray(cy, dtype=np.float64)
        hw = np.broadcast_to(np.asarray(half_width, dtype=np.float64), cx.shape)
        fracs = np.zeros(cx.shape, dtype=np.float64)
        if self.tree is not None and cx.size:
            squares = shapely.box(cx - hw, cy - hw, cx + hw, cy + hw)
            sq_i, piece_i = self.tree.query(squares, predicate="intersects")
            if len(sq_i):
                pieces = np.asarray(self.pieces, dtype=object)[piece_i]
                areas = shapely.area(shapely.intersection(pieces, squares[sq_i]))
                np.add.at(fracs, sq_i, areas)
                fracs = np.clip(fracs / (2 * hw) ** 2, 0.0, 1.0)
        labels = np.where(fracs > threshold, "tumor", "normal").astype(object)
        return labels, fracs

    def contains(self, x: float, y: float) -> bool:
        """Whether the level-0 point ``(x, y)`` lies in tumour."""
        if self.tree is None:
            return False
        pt = shapely.Point(x, y)
        return len(self.tree.query(pt, predicate="intersects")) > 0

    def outlines(self) -> list[np.ndarray]:
        """Exterior and interior rings of the tumour area, each (N, 2) level-0 px."""
        rings: list[np.ndarray] = []
        for p in self.pieces:
            rings.append(np.asarray(p.exterior.coords))
            rings.extend(np.asarray(r.coords) for r in p.interiors)
        return rings


def load_annotations(xml_path: str | os.PathLike[str]) -> SlideAnnotations:
    """Read a CAMELYON ASAP XML file into an indexed :class:`SlideAnnotations`.

    Raises:
        InputError: the file is missing, not XML, not ASAP, or has bad coordinates
            (the message names the file and the annotation).
    """
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise InputError(f"{xml_path}: annotation file not found; check --annotations")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise InputError(
            f"{xml_path}: not well-formed XML ({exc}); re-export it from ASAP or remove it"
        ) from None
    except OSError as exc:
        raise InputError(f"{xml_path}: cannot read annotation file ({exc})") from None
    if root.tag != "ASAP_Annotations":
        raise InputError(
            f"{xml_path}: root element is <{root.tag}>, expected <ASAP_Annotations> "
            "(CAMELYON ASAP XML); convert the file or remove it"
        )
    anns: list[Annotation] = []
    for i, el in enumerate(root.iterfind("./Annotations/Annotation")):
        name = el.get("Name") or f"#{i}"
        group = el.get("PartOfGroup") or "None"
        typ = (el.get("Type") or "Polygon").lower()
        coords: list[tuple[int, float, float]] = []  # (order, x, y) level-0 px
        for c in el.iterfind("./Coordinates/Coordinate"):
            coords.append(
                (
                    _safe_int(c.get("Order"), len(coords)),
                    _parse_coord(c.get("X"), xml_path, name, "X"),
                    _parse_coord(c.get("Y"), xml_path, name, "Y"),
                )
            )
        if typ in ("dot", "pointset", "point"):
            pts = np.zeros((0, 2))
        else:
            coords.sort(key=lambda t: t[0])
            pts = np.array([(x, y) for _, x, y in coords], dtype=np.float64).reshape(-1, 2)
            if typ == "rectangle" and len(pts) == 2:
                (x0, y0), (x1, y1) = pts
                pts = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        anns.append(Annotation(name, group, group_kind(group), pts))
    return SlideAnnotations._build(anns, path=xml_path)


def _safe_int(value: str | None, default: int) -> int:
    try:
        return int(float(value)) if value is not None else default
    except ValueError:
        return default


def slide_stem(slide: str | os.PathLike[str]) -> str:
    """A slide name without its slide extension (``"tumor_001.tif"`` -> ``"tumor_001"``)."""
    name = Path(slide).name
    low = name.lower()
    for ext in sorted(SLIDE_EXTENSIONS, key=len, reverse=True):
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def find_annotation(
    annotations_dir: str | os.PathLike[str], slide: str | os.PathLike[str]
) -> Path | None:
    """The ASAP XML for a slide in ``annotations_dir``, or None (no lesions annotated).

    ``slide`` is a slide name as in coords.csv (relative path, with or without
    extension). Tried in order: ``DIR/<relative path>.xml``, ``DIR/<stem>.xml``,
    then a case-insensitive match of ``<stem>.xml`` in DIR.
    """
    d = Path(annotations_dir)
    rel = Path(slide)
    stem = slide_stem(rel)
    candidates = [d / rel.parent / f"{stem}.xml", d / f"{stem}.xml"]
    for c in candidates:
        if c.is_file():
            return c
    target = f"{stem}.xml".lower()
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if p.name.lower() == target and p.is_file():
                return p
    return None


def require_xml(annotations_dir: str | os.PathLike[str]) -> None:
    """Refuse an ``--annotations`` folder without any ``.xml`` file.

    A wrong folder would otherwise label every patch ``normal`` without a word.
    """
    d = Path(annotations_dir)
    if next((p for p in d.rglob("*") if p.suffix.lower() == ".xml" and p.is_file()), None) is None:
        raise InputError(
            f"--annotations {d} holds no .xml files; give the folder of the ASAP XML lesion "
            "files (CAMELYON16: lesion_annotations/), or leave --annotations out"
        )


def load_for_slide(
    annotations_dir: str | os.PathLike[str] | None, slide: str | os.PathLike[str]
) -> SlideAnnotations:
    """:func:`load_annotations` of the slide's XML, or an empty set when it has none."""
    if annotations_dir is None:
        return SlideAnnotations.empty()
    p = find_annotation(annotations_dir, slide)
    return load_annotations(p) if p is not None else SlideAnnotations.empty()


# --------------------------------------------------------------------------- raster


def tumor_mask(
    annotations: SlideAnnotations,
    level_shape: tuple[int, int],
    downsample: float | tuple[float, float],
) -> np.ndarray:
    """Rasterise the tumour area at a pyramid level.

    Args:
        annotations: the slide's lesions.
        level_shape: ``(height, width)`` of the level in px.
        downsample: level-0 px per level px, a float or ``(dx, dy)``.

    Returns:
        ``(height, width)`` bool mask; a level pixel is tumour when its centre is.
    """
    from skimage.draw import polygon as draw_polygon

    h, w = int(level_shape[0]), int(level_shape[1])
    dx, dy = (downsample, downsample) if np.isscalar(downsample) else downsample  # type: ignore[misc]
    mask = np.zeros((h, w), dtype=bool)
    # largest first so islands inside holes are drawn after the hole is cleared
    for p in sorted(annotations.pieces, key=lambda g: g.area, reverse=True):
        for value, ring in [(True, p.exterior), *[(False, r) for r in p.interiors]]:
            xy = np.asarray(ring.coords)
            # skimage integer coordinates are pixel centres: level px i covers [i, i+1)
            rr, cc = draw_polygon(xy[:, 1] / dy - 0.5, xy[:, 0] / dx - 0.5, shape=(h, w))
            mask[rr, cc] = value
    return mask
