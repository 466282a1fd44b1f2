"""The garbage collector, set for a long-running process that serves streams and
starts jobs on time.

Once a process has started, almost everything it holds (modules, the app, the
jobs' states) lives as long as it does.  ``gc.freeze()`` keeps all of that out of
the collector's full passes, which otherwise walk it all while holding the GIL:
a pause of 10 ms or more that lands on a burst of due jobs or on a change going
out to a thousand streams.  And young objects are collected every 20,000
allocations instead of 700: each delivery to each stream and each run allocates a
few, almost all freed by reference counting at once; the collector is only for
cycles.  Measured: 250 collections became 4 for 20 changes sent to 1,000 streams
(bench/sse_load.py), and the slowest of 1,000 jobs due together started 5.4 ms
late instead of 6-14 ms (bench/scheduler_lateness.py).
"""

import gc

YOUNG_THRESHOLD = 20_000


def tune_after_start():
    """Call once the process has loaded everything it keeps (after the engine started)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
