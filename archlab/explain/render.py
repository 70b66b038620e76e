"""Arrays to inline PNG images: colour maps, upscaling, base64.

Heatmaps, filters and feature maps are written one pixel per value and enlarged by the browser
(``image-rendering: pixelated``), so a 12 x 12 attention map is a PNG of a few hundred bytes and
the page stays small; the labels around them are HTML text. Pillow writes the PNGs: no plotting
library is imported for them, which keeps a page quick to make.

Colour maps are piecewise-linear through a few stops of matplotlib's ``viridis`` (sequential:
weights, probabilities, gates in [0, 1]), ``RdBu_r`` (diverging around 0: states, filters) and
``inferno`` (saliency), and grey for images.
"""

from __future__ import annotations

import base64
import io

import numpy as np

_STOPS = {
    "viridis": ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"],
    "diverging": ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582",
                  "#d6604d", "#b2182b", "#67001f"],
    "inferno": ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06",
                "#f7d13d", "#fcffa4"],
    "grey": ["#000000", "#ffffff"],
}
CMAPS = tuple(_STOPS)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _lut(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of colour map ``name``."""
    stops = np.array([_rgb(c) for c in _STOPS[name]], dtype=np.float64)  # (K, 3)
    at = np.linspace(0.0, 1.0, len(stops))
    x = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(x, at, stops[:, ch]) for ch in range(3)], axis=1).round().astype(np.uint8)


_LUTS = {name: _lut(name) for name in _STOPS}


def css_gradient(cmap: str) -> str:
    """A CSS ``linear-gradient`` of the colour map, for legends."""
    return "linear-gradient(to right, " + ", ".join(_STOPS[cmap]) + ")"


def colour(values: np.ndarray, cmap: str = "viridis", vmin: float | None = None,
           vmax: float | None = None) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 through ``cmap``, scaled from [vmin, vmax] (default: the data's range;
    for the diverging map, symmetric around 0). NaN becomes white."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if cmap == "diverging":
        bound = float(np.abs(finite).max()) if finite.size else 1.0
        lo, hi = (-bound, bound) if vmin is None and vmax is None else (vmin, vmax)
    else:
        lo = float(finite.min()) if vmin is None and finite.size else (vmin if vmin is not None else 0.0)
        hi = float(finite.max()) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    span = (hi - lo) or 1.0
    index = np.clip((np.nan_to_num(v, nan=lo) - lo) / span, 0.0, 1.0) * 255
    rgb = _LUTS[cmap][index.round().astype(np.int64)]
    rgb[~np.isfinite(v)] = 255
    return rgb


def png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) or (H, W) uint8 -> PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def data_uri(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def image_rgb(image: np.ndarray) -> np.ndarray:
    """An image (C, H, W) with values in [0, 1] (C = 1 or 3; other C: the mean) -> (H, W, 3) uint8."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.shape[0] not in (1, 3):
        a = a.mean(0, keepdims=True)
    a = np.clip(a, 0.0, 1.0)
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return (a.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def normalise(a: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] by their own range (a constant array becomes 0.5)."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    return np.full_like(a, 0.5) if hi - lo < 1e-12 else (a - lo) / (hi - lo)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """An image (C, H, W) in [0, 1] under a heat map (h, w) in [0, 1], resized to the image (nearest
    neighbour for an exact block per cell): (H, W, 3) uint8."""
    base = image_rgb(image).astype(np.float64)
    H, W = base.shape[:2]
    h, w = heat.shape
    rows = (np.arange(H) * h // H)[:, None]
    cols = (np.arange(W) * w // W)[None, :]
    hot = colour(heat[rows, cols], "inferno", 0.0, 1.0).astype(np.float64)
    return ((1 - alpha) * base + alpha * hot).round().astype(np.uint8)
