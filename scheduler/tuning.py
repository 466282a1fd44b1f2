"""Process-wide settings for a long-running process that serves streams and starts
jobs on time, applied once it has started (``tune_after_start``).

- The garbage collector.  Once a process has started, almost everything it holds
  (modules, the app, the jobs' states) lives as long as it does: ``gc.freeze()``
  keeps all of that out of the collector's full passes, which otherwise walk it
  all while holding the GIL, a pause of 10 ms or more that lands on a burst of
  due jobs or on a change going out to a thousand streams.  And young objects are
  collected every 20,000 allocations instead of 700: each delivery to each stream
  and each run allocates a few, almost all freed by reference counting at once;
  the collector is only for cycles.  Measured: 250 collections became 4 for 20
  changes sent to 1,000 streams (bench/sse_load.py).
- The GIL's switch interval, 2 ms instead of 5.  A job that computes in pure
  Python holds the GIL until another thread has waited a whole interval; the
  loop, the other jobs and the web server's hub each wait their turn.  Measured
  with a busy job beside 20 others (bench/busy_job.py): the others' start p99
  went from 23 to 11 ms and event delivery from 21 to 9 ms; 1 ms did better
  still for that case but slowed a burst of 1,000 due jobs.
"""

import gc
import sys

YOUNG_THRESHOLD = 20_000
SWITCH_INTERVAL = 0.002  # seconds


def tune_after_start():
    """Call once the process has loaded everything it keeps (after the engine started)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
    sys.setswitchinterval(SWITCH_INTERVAL)
