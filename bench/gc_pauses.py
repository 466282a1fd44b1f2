"""Garbage-collector pauses of a server process, for the load benchmark: both the
reference broadcaster and our bench app report them through their stats URL."""

import gc
import time


class GcPauses:
    """Counts collections per generation and times them (``gc.callbacks``)."""

    def __init__(self):
        self.stats = {
            "collections": [0, 0, 0],
            "seconds": [0.0, 0.0, 0.0],
            "max_s": 0.0,
            "over_10ms": 0,
        }
        self._started = 0.0

    def install(self):
        gc.callbacks.append(self._watch)
        return self

    def _watch(self, phase, info):
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.stats["collections"][generation] += 1
        self.stats["seconds"][generation] += took
        self.stats["max_s"] = max(self.stats["max_s"], took)
        if took > 0.010:
            self.stats["over_10ms"] += 1
