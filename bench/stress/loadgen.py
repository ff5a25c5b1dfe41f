#!/usr/bin/env python3
"""
loadgen.py — appends generic-text auth lines to a file at a steady rate, the
way a busy gateway writes its log (O_APPEND, whole lines per write).

    loadgen.py --rate 250000 [--tokens 250000] [--duration S] OUT

One second of lines is built once (with a placeholder stamp; each token
once); each second the current UTC time is stamped into it, a new random
sample of 1 line in 1000 is made a rejection, and it is written in 100 slices,
one every 10 ms; a generator that falls behind catches up at once, so the
average rate is exact. Runs until --duration passes or SIGTERM/SIGINT, then
prints {"lines": N, "seconds": S, "rate": R} on stdout.
"""

import argparse
import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib  # noqa: E402

TICKS = 100

stop = False


def on_signal(signum, frame):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=250000, help="lines per second")
    # 250,000 tokens at 250,000 lines/s: one check per token per second, 300
    # per rate_spike window (300 s), well below its ceiling of 600.
    ap.add_argument("--tokens", type=int, default=250000, help="distinct tokens")
    ap.add_argument("--duration", type=float, default=0, help="seconds (0: until signalled)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("out")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    mk = stresslib.LineMaker(seed=a.seed)
    # Every token once per second, in a shuffled order, all accepted; each
    # second a fresh random sample of lines is flipped to rejected (so no
    # token fails at a steady rhythm, which failure_burst would report).
    order = [i % a.tokens for i in range(a.rate)]
    mk.rng.shuffle(order)
    lines = [mk.line(stresslib.token_of(n), rejected=False) for n in order]
    template = b"".join(lines)
    result_at = []   # offset of each line's 3-character result
    pos = 0
    for x in lines:
        pos += len(x)
        result_at.append(pos - 4)
    n_reject = a.rate * mk.reject_permille // 1000
    bounds = [0]
    per_tick = a.rate / TICKS
    pos = 0
    for k in range(1, TICKS + 1):
        upto = round(per_tick * k)
        pos = sum(len(x) for x in lines[round(per_tick * (k - 1)):upto]) + bounds[-1]
        bounds.append(pos)
    counts = [round(per_tick * k) - round(per_tick * (k - 1)) for k in range(1, TICKS + 1)]
    del lines

    fd = os.open(a.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    written = 0
    start = time.monotonic()
    sec = 0
    while not stop:
        buf = bytearray(template.replace(stresslib.PLACEHOLDER, stresslib.stamp().encode()))
        for i in mk.rng.sample(range(len(result_at)), n_reject):
            buf[result_at[i]:result_at[i] + 3] = b"401"
        data = memoryview(buf)
        for k in range(TICKS):
            if stop:
                break
            due = start + sec + k / TICKS
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            chunk = data[bounds[k]:bounds[k + 1]]
            while chunk:
                n = os.write(fd, chunk)
                chunk = chunk[n:]
            written += counts[k]
        sec += 1
        if a.duration and time.monotonic() - start >= a.duration:
            break
    elapsed = time.monotonic() - start
    os.close(fd)
    print(json.dumps({"lines": written, "seconds": round(elapsed, 3),
                      "rate": round(written / elapsed) if elapsed > 0 else 0}))


if __name__ == "__main__":
    main()
