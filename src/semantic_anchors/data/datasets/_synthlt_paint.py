"""The painters of ``synthlt``: shape inside-tests, textures and the background gradient."""

from __future__ import annotations

import numpy as np

_DARK = 0.3  # brightness of the dark half of a texture


def shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test of one shape on normalized local coordinates (radius 1) ``(m, P, P)``."""
    if shape == 0:  # disc
        return u * u + v * v <= 1.0
    if shape == 1:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if shape == 2:  # equilateral triangle: three half-planes, inradius 0.6
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            theta = np.pi / 2 + 2 * np.pi * k / 3
            inside &= u * np.float32(np.cos(theta)) + v * np.float32(np.sin(theta)) <= 0.6
        return inside
    if shape == 3:  # ring
        rho2 = u * u + v * v
        return (rho2 <= 1.0) & (rho2 >= 0.5**2)
    au, av = np.abs(u), np.abs(v)  # cross
    return ((au <= 0.36) & (av <= 1.0)) | ((av <= 0.36) & (au <= 1.0))


def texture_value(texture: int, a: np.ndarray, b: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Brightness (1 or ``_DARK``) of one texture on local pixel coordinates ``(m, P, P)``."""
    pa, pb = phase[:, 0, None, None], phase[:, 1, None, None]  # (m, 1, 1)
    dark = np.float32(_DARK)
    if texture == 0:  # solid
        return np.ones(a.shape, dtype=np.float32)
    if texture == 1:  # stripes, 3-px bands
        return np.where(np.floor(a / 3.0 + 2 * pa) % 2 == 0, np.float32(1), dark)
    if texture == 2:  # checker, 3-px cells
        cells = np.floor(a / 3.0 + 2 * pa) + np.floor(b / 3.0 + 2 * pb)
        return np.where(cells % 2 == 0, np.float32(1), dark)
    ma, mb = (a + 5 * pa) % 5.0 - 2.5, (b + 5 * pb) % 5.0 - 2.5  # dots on a 5-px lattice
    return np.where(ma * ma + mb * mb <= 1.5**2, dark, np.float32(1))


def paint_background(params: np.ndarray, size: int) -> np.ndarray:
    """Low-saturation grey with a linear gradient -> ``(n, S, S, 3)`` float32."""
    coord = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5  # (S,)
    grey = 0.2 + 0.55 * params[:, 0]  # (n,)
    tint = (params[:, 1:4] - 0.5) * 0.12  # (n, 3)
    grad = (params[:, 4:6] - 0.5) * 0.3  # (n, 2)
    image = (
        (grey[:, None] + tint)[:, None, None, :]  # (n, 1, 1, 3)
        + grad[:, 0, None, None, None] * coord[None, None, :, None]  # (n, 1, side, 1)
        + grad[:, 1, None, None, None] * coord[None, :, None, None]  # (n, side, 1, 1)
    )
    return np.ascontiguousarray(np.broadcast_to(image, (len(params), size, size, 3)), np.float32)
