"""Threads and worker processes.

``PROCESS_STATE_LOCK``: warnings filters and logger levels are shared by every thread, so code that changes
them for a while (``warnings.catch_warnings``, a logger's level) holds this lock, and two threads (the
pipeline reads the next scan in one while the main thread writes this one's outputs) never interleave such
changes and leave them changed. ``MAX_PROCESSES`` and :func:`available_cores` size the worker processes a
command starts (``lungtk phantom --jobs``, ``lungtk pipeline run --nproc``)."""

from __future__ import annotations

import os
import threading

PROCESS_STATE_LOCK = threading.RLock()
MAX_PROCESSES = 256  # the most worker processes one command starts on this machine


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
