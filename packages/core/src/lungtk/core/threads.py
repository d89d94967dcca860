"""One lock for process-wide state: warnings filters and logger levels are shared by every thread, so code
that changes them for a while (``warnings.catch_warnings``, a logger's level) holds this lock, and two
threads (the pipeline reads the next scan in one while the main thread writes this one's outputs) never
interleave such changes and leave them changed."""

from __future__ import annotations

import threading

PROCESS_STATE_LOCK = threading.RLock()
