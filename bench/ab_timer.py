#!/usr/bin/env python3
"""Interleaved A/B timer for bench/cluster.sh: `ab_timer.py RUNS A_CMD A_PREP B_CMD B_PREP`.

Each round runs A's preparation and times A, then B's preparation and times B (the order
flips every round), so a change in the machine's load hits both sides alike; prints the two
medians in microseconds. Commands are shell command lines (`sh -c`, the same cost on both
sides)."""
import statistics
import subprocess
import sys
import time


def timed(cmd: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["sh", "-c", cmd])
    t1 = time.perf_counter()
    if r.returncode != 0:
        sys.exit(f"ab_timer: failed: {cmd}")
    return t1 - t0


def main() -> None:
    runs = int(sys.argv[1])
    sides = [(sys.argv[2], sys.argv[3]), (sys.argv[4], sys.argv[5])]
    got = [[], []]
    for i in range(runs + 2):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for s in order:
            cmd, prep = sides[s]
            subprocess.run(["sh", "-c", prep], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            d = timed(cmd)
            if i >= 2:  # warm-up
                got[s].append(d)
    print(" ".join(str(int(statistics.median(g) * 1e6)) for g in got))


if __name__ == "__main__":
    main()
