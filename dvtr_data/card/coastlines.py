"""Coastlines and national borders for the card's map, read from the GSHHG files a Debian package ships.

Nothing may be downloaded when a card is made (cartopy fetches Natural Earth on first use; basemap pins
versions that clash with ours), so the map reads GSHHG (Wessel & Smith) in GMT's *binned* netCDF-4 layout, as
installed by ``apt-get install gmt-gshhg-low`` into ``/usr/share/gmt-gshhg`` (``install_map_data.sh`` beside
this file does it; the tests that need the files skip without them). netCDF-4 files are HDF5 files, so `h5py`
reads them without the netCDF C library.

The binned layout, as GMT's own reader (``gmt_shore.c``) decodes it: the globe is cut into square bins
(``Bin_size_in_minutes``), numbered row by row from the north-west corner; each bin lists the pieces
("segments") of shorelines or borders that run through it, and each point is stored as two unsigned 16-bit
offsets from the bin's south-west corner in units of bin size / 65535. Shoreline segments pack their point
count and hierarchy level into one integer (count = info >> 9, level = (info >> 6) & 7); border and river
files keep them in separate arrays. Shoreline levels: 1 land/ocean, 2 lake, 3 island in a lake, 4 pond,
5 and 6 the Antarctic ice front and grounding line. Border levels: 1 national, 2 internal, 3 maritime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GSHHG_DIRS = ("/usr/share/gmt-gshhg", "/usr/share/gshhg-gmt-nc4", "/usr/share/gmt/coast")
ENV_DIR = "DVTR_GSHHG_DIR"
# resolution letters from coarse to fine, and the widest map span (degrees) each is drawn for
RESOLUTIONS = (("c", 360.0), ("l", 60.0), ("i", 8.0))
COAST_LEVELS = (1, 5, 6)
LAKE_LEVELS = (2,)
BORDER_LEVELS = (1,)


@dataclass(frozen=True)
class MapLines:
    """Polylines (lon, lat arrays in degrees, lon in -180..180) for one map extent, and their source."""

    coast: list[tuple[np.ndarray, np.ndarray]]
    lakes: list[tuple[np.ndarray, np.ndarray]]
    borders: list[tuple[np.ndarray, np.ndarray]]
    source: str  # e.g. "GSHHG 2.3.7, resolution l (/usr/share/gmt-gshhg)"


def gshhg_dir() -> Path | None:
    """The folder holding ``binned_GSHHS_*.nc``: ``$DVTR_GSHHG_DIR`` when set (even if empty: then none), else
    the Debian locations."""
    env = os.environ.get(ENV_DIR)
    candidates = [env] if env is not None else list(GSHHG_DIRS)
    for c in candidates:
        if c and any(Path(c).glob("binned_GSHHS_*.nc")):
            return Path(c)
    return None


def _resolution(folder: Path, span_deg: float) -> str | None:
    """The finest resolution present whose span limit covers ``span_deg`` (finer is slower and needless)."""
    present = [r for r, _ in RESOLUTIONS if (folder / f"binned_GSHHS_{r}.nc").is_file()]
    fitting = [r for r, limit in RESOLUTIONS if r in present and span_deg <= limit]
    if fitting:
        return fitting[-1]
    return present[0] if present else None


def read_binned(
    path: Path, extent: tuple[float, float, float, float], levels: tuple[int, ...]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Segments of the binned GSHHG file ``path`` with a level in ``levels`` in bins touching ``extent``
    (lon_min, lon_max, lat_min, lat_max; lon in -180..180), as (lon, lat) arrays with lon in -180..180."""
    import h5py  # imported here: a card without h5py still renders, with a plain scatter

    lon0, lon1, lat0, lat1 = extent
    with h5py.File(path, "r") as f:
        bsize = float(f["Bin_size_in_minutes"][0]) / 60.0
        nx = int(f["N_bins_in_360_longitude_range"][0])
        first_seg = f["Id_of_first_segment_in_a_bin"][()]
        n_seg = f["N_segments_in_a_bin"][()].astype(np.int64)
        first_pt = f["Id_of_first_point_in_a_segment"][()].astype(np.int64)
        if "Embedded_npts_levels_exit_entry_for_a_segment" in f:
            info = f["Embedded_npts_levels_exit_entry_for_a_segment"][()].astype(np.int64)
            npts, level = info >> 9, (info >> 6) & 7
        else:
            npts = f["N_points_for_a_segment"][()].astype(np.int64)
            level = f["Hierarchial_level_of_a_segment"][()].astype(np.int64)
        dx = f["Relative_longitude_from_SW_corner_of_bin"][()].view(np.uint16).astype(np.float64)
        dy = f["Relative_latitude_from_SW_corner_of_bin"][()].view(np.uint16).astype(np.float64)
    scale = bsize / 65535.0
    bins = np.arange(len(first_seg))
    lat_sw = 90.0 - (bins // nx + 1) * bsize
    lon_sw = (bins % nx) * bsize
    lon_sw = np.where(lon_sw >= 180.0, lon_sw - 360.0, lon_sw)  # bins never straddle 180 (it is a bin edge)
    hit = (lat_sw + bsize >= lat0) & (lat_sw <= lat1) & (lon_sw + bsize >= lon0) & (lon_sw <= lon1)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    wanted = set(levels)
    for b in np.flatnonzero(hit):
        for s in range(int(first_seg[b]), int(first_seg[b] + n_seg[b])):
            if int(level[s]) not in wanted or npts[s] < 2:
                continue
            a, z = first_pt[s], first_pt[s] + npts[s]
            out.append((lon_sw[b] + dx[a:z] * scale, lat_sw[b] + dy[a:z] * scale))
    return out


def map_lines(extent: tuple[float, float, float, float], folder: Path | None = None) -> MapLines | None:
    """Coastlines, lakes and national borders for ``extent``; None when no GSHHG data (or no h5py) is here."""
    folder = folder if folder is not None else gshhg_dir()
    if folder is None:
        return None
    span = max(extent[1] - extent[0], extent[3] - extent[2])
    res = _resolution(folder, span)
    if res is None:
        return None
    try:
        import h5py
    except ImportError:
        return None
    shore = folder / f"binned_GSHHS_{res}.nc"
    border = folder / f"binned_border_{res}.nc"
    with h5py.File(shore, "r") as f:
        raw = f.attrs.get("version", b"?")
        version = raw.decode() if isinstance(raw, bytes) else str(raw)
    return MapLines(
        coast=read_binned(shore, extent, COAST_LEVELS),
        lakes=read_binned(shore, extent, LAKE_LEVELS),
        borders=read_binned(border, extent, BORDER_LEVELS) if border.is_file() else [],
        source=f"GSHHG {version}, resolution {res} ({folder})",
    )
