"""A small but honest detector: the brightest compact blobs, found with a Difference-of-Gaussians filter.

Nodules are roughly spherical and denser than lung; a DoG filter tuned to a nodule's size responds to
such blobs more than to elongated vessels. The detector takes the strongest local maxima of the DoG
response inside soft-tissue-like intensities and reports them in patient millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungtk.core import Candidate, RunOptions, Volume


@dataclass
class BrightestBlobDetector:
    """Marks the ``top`` brightest compact blobs of about ``diameter_mm`` in a scan."""

    diameter_mm: float = 8.0
    top: int = 10
    min_hu: float = -400.0

    def detect(self, ct: Volume) -> list[Candidate]:
        volume = np.asarray(ct.array, dtype=np.float32)
        spacing_irc = ct.geometry.spacing[::-1]
        sigma_mm = self.diameter_mm / (2.0 * np.sqrt(3.0))  # DoG/LoG peak for a sphere of that size
        small = ndimage.gaussian_filter(volume, sigma_mm / spacing_irc)
        large = ndimage.gaussian_filter(volume, 1.6 * sigma_mm / spacing_irc)
        response = small - large
        footprint = np.maximum(1, np.round(self.diameter_mm / spacing_irc)).astype(int)
        peaks = (response == ndimage.maximum_filter(response, size=tuple(footprint))) & (small > self.min_hu)
        peaks &= response > 0
        irc = np.argwhere(peaks)
        if irc.size == 0:
            return []
        strength = response[tuple(irc.T)]
        order = np.argsort(strength)[::-1][: self.top]
        irc, strength = irc[order], strength[order]
        # A squashing of the response (HU of contrast) into (0, 1): 100 HU of contrast gives 0.5.
        probability = strength / (strength + 100.0)
        xyz = ct.geometry.irc2xyz(irc)
        return [
            Candidate(tuple(p), self.diameter_mm, float(q), source="example-brightest")
            for p, q in zip(xyz, probability, strict=True)
        ]


def create(options: RunOptions) -> BrightestBlobDetector:
    """The factory lungtk calls: ``options.settings`` holds the settings declared in ``plugin.py``."""
    return BrightestBlobDetector(**options.settings)
