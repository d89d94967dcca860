"""A look at a phantom scan: the axial and coronal slices through its largest nodule (or the middle of the
scan), lung window, nodule outlines in red, voxels shown at their true aspect."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lungtk.ct_io.render import overlay, upscale, window
from lungtk.phantom.scan import PhantomScan


def preview(scan: PhantomScan, scale: float = 2.0) -> NDArray[np.uint8]:
    array, labels = scan.ct.array, scan.labels
    if scan.nodules:
        largest = max(scan.nodules, key=lambda n: n.volume_mm3)
        i, r, _ = scan.ct.xyz2irc([largest.center_xyz])[0]
    else:
        i, r = array.shape[0] // 2, array.shape[1] // 2
    sx, _sy, sz = scan.ct.geometry.spacing
    axial = upscale(overlay(window(array[i]), labels[i] > 0), scale, scale)
    # Coronal: superior at the top, rows stretched by the slice spacing over the pixel spacing.
    coronal = overlay(window(array[::-1, r, :]), labels[::-1, r, :] > 0)
    coronal = upscale(coronal, scale * sz / sx, scale)
    height = max(axial.shape[0], coronal.shape[0])
    pad = lambda im: np.pad(im, ((0, height - im.shape[0]), (0, 4), (0, 0)))  # noqa: E731
    return np.concatenate([pad(axial), pad(coronal)], axis=1)
