"""lungtk.ct_io: CT volumes and their geometry, readers and writers, xyz <-> irc, preprocessing, crops,
caches and data-set indexes. Torch-free.

    >>> from lungtk.ct_io import read_ct
    >>> ct = read_ct("1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860.mhd")
    >>> ct.xyz2irc([-100.5, 20.0, -150.0])
"""

from lungtk.core import Geometry
from lungtk.ct_io.errors import CTReadError
from lungtk.ct_io.io.formats import SCAN_SUFFIXES, format_of, read_ct, series_uid_of, write_image
from lungtk.ct_io.volume import CTVolume

__all__ = [
    "SCAN_SUFFIXES",
    "CTReadError",
    "CTVolume",
    "Geometry",
    "format_of",
    "read_ct",
    "series_uid_of",
    "write_image",
]
