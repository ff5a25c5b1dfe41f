#!/usr/bin/env python3
"""
caseflood.py — ingestion rate against the size of the flagged store
(state_dir/cases.json), found while running load.sh: the store is rewritten
whole whenever it changes, so each new anomaly costs a write proportional
to every case held.

    bench/stress/caseflood.py --bin BUILD/tokenwatch [CASES:ANOMALIES ...]

For each pair, a fresh daemon (default rules, test GeoIP database) first gets
CASES flagged tokens (20 rejections each: failure_burst), then 1,000,000
ordinary lines (250,000 steady tokens, all accepted) with ANOMALIES new
failure bursts spread evenly among them; the time until every line is
counted and every new case exists (tokenwatch_tokens_flagged) gives the rate.
Prints a Markdown table: rate, daemon CPU seconds, size of cases.json, and
how long the CASES setup took.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402
from stresslib import log  # noqa: E402


def burst(st, tag):
    tok = b"at-ca5e%012x" % tag
    return b"%s ip=10.1.2.3 user=x token=%s path=/ result=401\n" % (st, tok) * 20


def run(binary, n_cases, n_anoms, lines):
    work = tempfile.mkdtemp(prefix="tokenwatch-caseflood.")
    d = None
    try:
        inp = os.path.join(work, "gw.log")
        open(inp, "wb").close()
        d = sl.Daemon(binary, work, [{"name": "gw", "path": inp, "format": "generic-text",
                                      "start": "end"}]).start()
        st = sl.stamp().encode()

        def counted():
            return d.value("auth_token_check", input="gw") or 0

        def flagged():
            return d.value("tokenwatch_tokens_flagged") or 0

        t0 = time.monotonic()
        with open(inp, "ab") as f:
            for k in range(n_cases):
                f.write(burst(st, k))
        while counted() < 20 * n_cases or flagged() < n_cases:
            time.sleep(0.05)
        setup = time.monotonic() - t0

        mk = sl.LineMaker(seed=5)
        every = lines // n_anoms if n_anoms else 0
        body = []
        for i in range(lines):
            body.append(mk.line(sl.token_of(i % 250000), st, rejected=False))
            if every and i % every == 0:
                body.append(burst(st, 10**7 + i))
        data = b"".join(body)
        n = data.count(b"\n")
        base = counted()
        cpu0 = sl.cpu_seconds(d.proc.pid)
        t0 = time.monotonic()
        with open(inp, "ab") as f:
            f.write(data)
        while counted() < base + n or flagged() < n_cases + n_anoms:
            time.sleep(0.01)
        secs = time.monotonic() - t0
        cpu = sl.cpu_seconds(d.proc.pid) - cpu0
        p = os.path.join(d.state_dir, "cases.json")
        size = os.path.getsize(p) if os.path.exists(p) else 0
        d.stop()
        return {"cases": n_cases, "anomalies": n_anoms, "lines": n, "seconds": secs,
                "rate": n / secs, "cpu": cpu, "size": size, "setup": setup}
    finally:
        if d is not None:
            d.kill()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("pairs", nargs="*",
                    default=["0:0", "0:200", "5000:0", "5000:200", "20000:0", "20000:200"])
    a = ap.parse_args()
    rows = []
    for p in a.pairs:
        c, n = (int(x) for x in p.split(":"))
        r = run(a.bin, c, n, a.lines)
        rows.append(r)
        log("%6d cases + %4d new anomalies: %.0f lines/s, daemon CPU %.2f s, cases.json %.1f MB"
            % (c, n, r["rate"], r["cpu"], r["size"] / 1e6))
    print("| cases held | new anomalies in %d lines | lines/s | daemon CPU s | cases.json "
          "| setup (creating the cases) |" % a.lines)
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print("| %d | %d | %.0f | %.2f | %.1f MB | %.1f s |"
              % (r["cases"], r["anomalies"], r["rate"], r["cpu"], r["size"] / 1e6, r["setup"]))


if __name__ == "__main__":
    main()
