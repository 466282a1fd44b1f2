"""Run every benchmark in turn: ``.venv/bin/python -m bench [--quick] [--no-wait]
[--baseline PATH]``.

Full sizes take 11-13 minutes on a 2-core machine, plus about 12 for ``sse_load``
(more if other processes keep it busy: each run first waits up to 10 s for a quiet
machine); ``--quick`` about 3, plus about 4.  ``--baseline PATH`` is passed to the
scheduler benchmarks (each case then also runs ours from that checkout, about
doubling their time); ``sse_load`` runs without it.
"""

import argparse
import sys
import time

from bench import busy_job, idle_cpu, run_now_latency, scheduler_lateness, sse_load

SUITE = (
    ("scheduler_lateness", scheduler_lateness),
    ("run_now_latency", run_now_latency),
    ("idle_cpu", idle_cpu),
    ("busy_job", busy_job),
    ("sse_load", sse_load),
)
TAKE_BASELINE = ("scheduler_lateness", "run_now_latency", "idle_cpu", "busy_job")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, for a smoke run")
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for a quiet machine before each run"
    )
    parser.add_argument(
        "--only", choices=[name for name, _ in SUITE], action="append", help="only these"
    )
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="also run ours from the checkout at PATH in the scheduler benchmarks",
    )
    args = parser.parse_args()
    passed = [flag for flag, on in (("--quick", args.quick), ("--no-wait", args.no_wait)) if on]
    started = time.monotonic()
    for name, module in SUITE:
        if args.only and name not in args.only:
            continue
        print(f"\n## {name}\n", flush=True)
        if args.baseline and name in TAKE_BASELINE:
            module.main([*passed, "--baseline", args.baseline])
        else:
            if args.baseline:
                print("(without --baseline: it measures the server, not one engine)\n")
            module.main(passed)
        sys.stdout.flush()
    print(f"\nWhole suite: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
