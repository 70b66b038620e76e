"""Image transforms written with torch ops, for a batch (N, C, H, W) or one image (C, H, W).

    Normalize(mean, std)          x_c <- (x_c - mean_c) / std_c
    RandomCrop(size, padding)     zero-pad each side by ``padding``, cut a size x size window at a
                                  random offset (one offset per image): the CIFAR augmentation of
                                  He et al. 2015 is RandomCrop(32, padding=4)
    Translate(dy, dx)             move every image dy pixels down and dx right, zeros coming in
    RandomHorizontalFlip(p)       mirror each image left-right with probability p
    RandomAffine(degrees, scale)  turn each image about its centre by an angle drawn from
                                  U(-degrees, degrees) and zoom it by a factor from
                                  U(1 - scale, 1 + scale), bilinear, zeros coming in: the
                                  distortions of the digit-recognition papers (Simard et al. 2003)
    RandomElastic(alpha, sigma)   move each pixel by a smooth random field: uniform noise in
                                  [-1, 1] per pixel and axis, blurred by a Gaussian of ``sigma``
                                  pixels, times ``alpha`` pixels (Simard et al. 2003's elastic
                                  distortion; they use alpha 34, sigma 4 on MNIST)
    Resize(size)                  bilinear resampling with F.interpolate
    Compose([t1, t2, ...])        t_n(... t_1(x))

Random transforms draw from ``generator`` (a ``torch.Generator`` on the CPU, passed at the call)
so augmentation is reproducible; the draws are moved to the images' device. New tensors follow
the input's device and dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from archlab.errors import check


def _as_batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    check(isinstance(x, torch.Tensor) and x.ndim in (3, 4),
          f"images must be a tensor (C, H, W) or (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    return (x.unsqueeze(0), True) if x.ndim == 3 else (x, False)  # (C, H, W) -> (1, C, H, W)


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    check(len(pair) == 2 and all(isinstance(s, int) and s > 0 for s in pair),
          f"{name} must be a positive int or (H, W), got {size!r}")
    return pair


class Transform:
    """Call on a batch or one image; random transforms accept ``generator=``."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, single = _as_batch(x)
        out = self.apply(batch, generator)
        return out.squeeze(0) if single else out

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


class Normalize(Transform):
    """x_c <- (x_c - mean_c) / std_c, per channel c; usually with ``ImageData.mean``/``.std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        check(len(self.mean) == len(self.std) > 0,
              f"mean and std need one value per channel, got {len(self.mean)} and {len(self.std)}")
        check(all(s > 0 for s in self.std), f"std must be positive, got {self.std}")

    def apply(self, x, generator=None):
        check(x.shape[1] == len(self.mean), f"images have {x.shape[1]} channels, Normalize expects {len(self.mean)}")
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)  # (1, C, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomCrop(Transform):
    """Pad by ``padding`` (with ``fill``), then cut an (h, w) window at a random offset per image."""

    def __init__(self, size: int | Sequence[int], padding: int = 0, fill: float = 0.0):
        self.size = _pair(size, "size")
        check(isinstance(padding, int) and padding >= 0, f"padding must be an int >= 0, got {padding!r}")
        self.padding, self.fill = padding, float(fill)

    def apply(self, x, generator=None):
        n, p = x.shape[0], self.padding
        h, w = self.size
        padded = F.pad(x, (p, p, p, p), value=self.fill)  # (N, C, H + 2p, W + 2p)
        H, W = padded.shape[-2:]
        check(h <= H and w <= W, f"crop size {self.size} is larger than the padded image ({H}, {W})")
        top = torch.randint(0, H - h + 1, (n,), generator=generator).to(x.device)
        left = torch.randint(0, W - w + 1, (n,), generator=generator).to(x.device)
        rows = top[:, None] + torch.arange(h, device=x.device)  # (N, h)
        cols = left[:, None] + torch.arange(w, device=x.device)  # (N, w)
        images = torch.arange(n, device=x.device)[:, None, None]  # (N, 1, 1)
        window = padded[images, :, rows[:, :, None], cols[:, None, :]]  # (N, h, w, C): indexed dims first
        return window.permute(0, 3, 1, 2)  # (N, C, h, w)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class Translate(Transform):
    """Move every image ``dy`` pixels down and ``dx`` right (negative: up / left); ``fill`` comes in.

    ``Translate(0, 2)(x)[..., :, j] == x[..., :, j - 2]`` for j >= 2, and ``fill`` in columns 0, 1.
    Deterministic: the shift of a test set in a translation-tolerance measurement.
    """

    def __init__(self, dy: int, dx: int, fill: float = 0.0):
        check(all(isinstance(v, int) for v in (dy, dx)), f"dy and dx must be integers, got {dy!r}, {dx!r}")
        self.dy, self.dx, self.fill = dy, dx, float(fill)

    def apply(self, x, generator=None):
        dy, dx = self.dy, self.dx
        H, W = x.shape[-2:]
        if abs(dy) >= H or abs(dx) >= W:
            return torch.full_like(x, self.fill)
        # Pad on the side the image moves away from, then cut the window back to (H, W).
        padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), value=self.fill)
        top, left = max(-dy, 0), max(-dx, 0)
        return padded[..., top:top + H, left:left + W]  # (N, C, H, W)

    def __repr__(self):
        return f"Translate(dy={self.dy}, dx={self.dx})"


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        check(0.0 <= p <= 1.0, f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def apply(self, x, generator=None):
        flip = (torch.rand(x.shape[0], generator=generator) < self.p).to(x.device)  # (N,)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


def turn_and_zoom(x: torch.Tensor, degrees: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) turned counter-clockwise (as displayed) by ``degrees`` (N,) and scaled by
    ``zoom`` (N,), both about the image centre; bilinear, zeros coming in.

    Each output pixel p, in pixels from the centre along (x right, y down), reads the input at
    ``p_in = A p / zoom`` with ``A = [[cos theta, -sin theta], [sin theta, cos theta]]``.
    ``grid_sample`` takes that map in coordinates normalised to [-1, 1] per axis, ``p = D n`` with
    ``D = diag(W/2, H/2)``, so the matrix it gets is ``D^-1 A D / zoom`` (a true rotation on a
    non-square image too). 90 degrees is ``torch.rot90(x, 1, dims=(-2, -1))`` exactly on a square
    image; 180 flips both axes on any.
    """
    n, _, h, w = x.shape
    theta = torch.deg2rad(torch.as_tensor(degrees, dtype=torch.float64).reshape(-1).expand(n))  # (N,)
    zoom = torch.as_tensor(zoom, dtype=torch.float64).reshape(-1).expand(n)  # (N,)
    check(bool((zoom > 0).all()), f"zoom factors must be positive, got {zoom.min().item()}")
    cos, sin = torch.cos(theta) / zoom, torch.sin(theta) / zoom
    aspect = h / w  # D^-1 A D: the off-diagonal terms carry H / W and W / H
    m = torch.zeros(n, 2, 3, dtype=torch.float64)  # the third column (a shift) stays 0
    m[:, 0, 0], m[:, 0, 1] = cos, -sin * aspect
    m[:, 1, 0], m[:, 1, 1] = sin / aspect, cos
    grid = F.affine_grid(m.to(x.device, x.dtype), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomAffine(Transform):
    """Turn each image by an angle drawn from U(-degrees, degrees) and zoom it by a factor drawn from
    U(1 - scale, 1 + scale), about its centre (``turn_and_zoom``): the small distortions of the
    digit-recognition papers (Simard et al. 2003)."""

    def __init__(self, degrees: float = 0.0, scale: float = 0.0):
        check(isinstance(degrees, (int, float)) and 0.0 <= degrees <= 180.0,
              f"degrees must be a number in [0, 180], got {degrees!r}")
        check(isinstance(scale, (int, float)) and 0.0 <= scale < 1.0, f"scale must be a number in [0, 1), got {scale!r}")
        self.degrees, self.scale = float(degrees), float(scale)

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n angles in degrees and n zoom factors, (n,) each."""
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 2 - 1  # (n, 2) in [-1, 1)
        return u[:, 0] * self.degrees, 1.0 + u[:, 1] * self.scale

    def apply(self, x, generator=None):
        if not self.degrees and not self.scale:
            return x
        return turn_and_zoom(x, *self.draw(x.shape[0], generator))

    def __repr__(self):
        return f"RandomAffine(degrees={self.degrees:g}, scale={self.scale:g})"


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of (N, C, H, W) convolved with a normalised Gaussian of std ``sigma`` pixels,
    truncated at 3 sigma, zeros beyond the edges: two 1-D passes (rows, then columns)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()  # (2r + 1,)
    c = x.shape[1]
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)  # along W
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)  # along H


def displace(x: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) resampled so output pixel (i, j) reads the input at
    ``(i + field[:, 1, i, j], j + field[:, 0, i, j])``: a field (N, 2, H, W) of (x right, y down)
    displacements in pixels; bilinear, zeros coming in."""
    n, _, h, w = x.shape
    check(tuple(field.shape) == (n, 2, h, w), f"field must be (N, 2, H, W) = {(n, 2, h, w)}, got {tuple(field.shape)}")
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype, device=x.device),
                            torch.arange(w, dtype=x.dtype, device=x.device), indexing="ij")  # (H, W) each
    # grid_sample's coordinates (align_corners=False): pixel centre k of n sits at (2k + 1) / n - 1.
    gx = (2 * (xs + field[:, 0]) + 1) / w - 1  # (N, H, W)
    gy = (2 * (ys + field[:, 1]) + 1) / h - 1
    grid = torch.stack((gx, gy), dim=-1)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomElastic(Transform):
    """Simard et al. 2003's elastic distortion: a displacement field of uniform noise in [-1, 1] per
    pixel and axis, blurred by a Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels, moves
    each image's pixels (``displace``). A small sigma gives random noise, a large one near-rigid
    shifts; between them the strokes bend as a hand would."""

    def __init__(self, alpha: float = 0.0, sigma: float = 4.0):
        check(isinstance(alpha, (int, float)) and 0.0 <= alpha <= 100.0,
              f"alpha must be a number of pixels in [0, 100], got {alpha!r}")
        check(isinstance(sigma, (int, float)) and 0.5 <= sigma <= 20.0,
              f"sigma must be a number of pixels in [0.5, 20], got {sigma!r}")
        self.alpha, self.sigma = float(alpha), float(sigma)

    def draw(self, n: int, h: int, w: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n displacement fields (n, 2, h, w), in pixels."""
        noise = torch.rand(n, 2, h, w, generator=generator, dtype=torch.float64) * 2 - 1  # U[-1, 1)
        return gaussian_blur(noise, self.sigma) * self.alpha

    def apply(self, x, generator=None):
        if not self.alpha:
            return x
        n, _, h, w = x.shape
        return displace(x, self.draw(n, h, w, generator).to(x.device, x.dtype))

    def __repr__(self):
        return f"RandomElastic(alpha={self.alpha:g}, sigma={self.sigma:g})"


class Resize(Transform):
    """Resample to ``size`` (an int for square, or (H, W)) with ``F.interpolate``."""

    def __init__(self, size: int | Sequence[int], mode: str = "bilinear", antialias: bool = False):
        self.size = _pair(size, "size")
        check(mode in ("nearest", "bilinear", "bicubic", "area"),
              f"mode must be one of nearest, bilinear, bicubic, area, got {mode!r}")
        self.mode, self.antialias = mode, antialias

    def apply(self, x, generator=None):
        if tuple(x.shape[-2:]) == self.size:
            return x
        smooth = self.mode in ("bilinear", "bicubic")
        return F.interpolate(x, size=self.size, mode=self.mode, align_corners=False if smooth else None,
                             antialias=self.antialias and smooth)

    def __repr__(self):
        return f"Resize(size={self.size}, mode={self.mode!r})"


class Compose(Transform):
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)
        bad = [t for t in self.transforms if not isinstance(t, Transform)]
        check(not bad, f"Compose takes archlab.data.transforms objects, got {bad}")

    def apply(self, x, generator=None):
        for t in self.transforms:
            x = t.apply(x, generator)
        return x

    def __repr__(self):
        return f"Compose({self.transforms})"
