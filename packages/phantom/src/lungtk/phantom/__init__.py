"""lungtk.phantom: synthetic chest CT with real LIDC-IDRI nodule shapes and exact ground truth.

>>> from lungtk.phantom import make_scan, write_phantoms
>>> scan = make_scan(seed=0, index=0)          # a CTVolume, a label mask, nodules, decoys
>>> write_phantoms("phantoms/", n=4, seed=1)   # LUNA16 / LNDb-like files on disk
>>> write_phantoms("more/", n=40, jobs=0)      # one process per CPU core, the same bytes
"""

from lungtk.phantom.dataset import PhantomSet, ScanSummary, write_phantoms
from lungtk.phantom.scan import PhantomNodule, PhantomScan, make_scan, series_uid

__all__ = [
    "PhantomNodule",
    "PhantomScan",
    "PhantomSet",
    "ScanSummary",
    "make_scan",
    "series_uid",
    "write_phantoms",
]
