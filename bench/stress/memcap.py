#!/usr/bin/env python3
"""
memcap.py — memory cap under a flood of distinct tokens (issue 7 point 6).
Run through bench/stress/memcap.sh, which builds the binary.

A daemon (`tokenwatch run`, default rules, the test GeoIP database,
max_tokens --max-tokens) follows one input. --tokens distinct tokens (one
line each; each token belongs to one of 50,000 principals) are appended in
--chunks equal chunks, each prepared before it is appended and then appended
at once; the time until auth_token_check has counted the chunk gives that
chunk's ingestion rate (counted, and judged: tokens_tracked +
tokens_evicted_total has grown by the chunk's tokens too). VmRSS is sampled every --sample-s seconds
throughout, with tokens_tracked and tokens_evicted_total.

Pass/fail (exit 1 when missed):
  - tokens_tracked = max_tokens at the end, evicted = tokens - max_tokens;
  - RSS plateaus: the RSS after the last chunk is within 5 % of the RSS after
    the chunk that filled the table (and the peak within 10 %);
  - lookups stay fast: the last chunk's rate is within 20 % of the second
    chunk's (the first runs into an empty table), in lines per CPU second
    of the daemon (wall-clock rates are printed too; on a shared machine
    they follow whatever else runs).
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402
from stresslib import log  # noqa: E402


class Sampler(threading.Thread):
    def __init__(self, d, period):
        super().__init__(daemon=True)
        self.d, self.period = d, period
        self.samples = []   # (t, rss_kb, tracked, evicted, checks, phase)
        self.phase = "start"
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def sample(self):
        m = self.d.metrics()
        self.samples.append((time.monotonic() - self.t0, self.d.rss_kb(),
                             m.get("tokenwatch_tokens_tracked", 0),
                             m.get("tokenwatch_tokens_evicted_total", 0),
                             m.get('auth_token_check{input="gw"}', 0), self.phase))

    def run(self):
        while not self.stop.is_set():
            try:
                self.sample()
            except OSError:
                pass
            self.stop.wait(self.period)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tokens", type=int, default=5000000)
    ap.add_argument("--max-tokens", type=int, default=1000000)
    # Five chunks of a million: the first fills the table, the second is the
    # first that evicts one token per new one, as every later chunk does.
    ap.add_argument("--chunks", type=int, default=5)
    ap.add_argument("--sample-s", type=float, default=2.0)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    per = a.tokens // a.chunks
    work = tempfile.mkdtemp(prefix="tokenwatch-memcap.")
    d = None
    try:
        inp = os.path.join(work, "gw.log")
        open(inp, "wb").close()
        # Baselines are saved at shutdown only, so that a save of a million
        # baselines (about a second on the analysis thread) does not land in
        # one chunk's timing.
        d = sl.Daemon(a.bin, work, [{"name": "gw", "path": inp, "format": "generic-text",
                                     "start": "end"}],
                      extra={"max_tokens": a.max_tokens, "baselines_interval_s": 86400})
        d.start()
        log("daemon pid %d, max_tokens %d, %d tokens in %d chunks of %d"
            % (d.proc.pid, a.max_tokens, a.tokens, a.chunks, per))
        sampler = Sampler(d, a.sample_s)
        sampler.start()
        mk = sl.LineMaker(seed=3)
        chunk = os.path.join(work, "chunk.log")
        rows = []
        total = 0
        for i in range(a.chunks):
            sampler.phase = "gen %d" % (i + 1)
            st = sl.stamp().encode()
            with open(chunk, "wb") as f:
                for base in range(i * per, (i + 1) * per, 100000):
                    f.write(b"".join(mk.line(sl.token_of(n), st)
                                     for n in range(base, min(base + 100000, (i + 1) * per))))
            sampler.phase = "chunk %d" % (i + 1)
            cpu0 = sl.cpu_seconds(d.proc.pid)
            t0 = time.monotonic()
            with open(chunk, "rb") as src, open(inp, "ab") as dst:
                shutil.copyfileobj(src, dst, 16 << 20)
            total += per
            # Counted (by the reader) and judged (by the analysis thread,
            # when there is one): every line is a new token, so judged means
            # tracked + evicted = lines so far.
            while True:
                m = d.metrics()
                if (m.get('auth_token_check{input="gw"}', 0) >= total and
                        m.get("tokenwatch_tokens_tracked", 0) +
                        m.get("tokenwatch_tokens_evicted_total", 0) >= total):
                    break
                if d.proc.poll() is not None:
                    raise SystemExit("tokenwatch died:\n" + d.stderr())
                time.sleep(0.01)
            secs = time.monotonic() - t0
            cpu = sl.cpu_seconds(d.proc.pid) - cpu0
            m = d.metrics()
            rss = d.rss_kb()
            rows.append({"chunk": i + 1, "lines": per, "seconds": secs, "rate": per / secs,
                         "cpu": cpu, "cpu_rate": per / cpu if cpu > 0 else float("nan"),
                         "rss_kb": rss, "tracked": m.get("tokenwatch_tokens_tracked", 0),
                         "evicted": m.get("tokenwatch_tokens_evicted_total", 0)})
            log("chunk %2d: %d lines in %.2f s = %8.0f lines/s (%.2f CPU s = %8.0f lines per "
                "CPU s); RSS %7.1f MiB; tracked %d, evicted %d"
                % (i + 1, per, secs, per / secs, cpu, rows[-1]["cpu_rate"], rss / 1024,
                   rows[-1]["tracked"], rows[-1]["evicted"]))
        os.unlink(chunk)
        sampler.phase = "idle"
        time.sleep(max(3 * a.sample_s, 5))   # RSS after the flood, flat or not
        sampler.stop.set()
        sampler.join()
        sampler.sample()
        hwm = sl.proc_status(d.proc.pid).get("VmHWM", 0)
        final = d.metrics()
        rc = d.stop(timeout=120)
        summary(a, rows, sampler.samples, hwm, final, rc)
        return 0 if verdict(a, rows, sampler.samples, final)[0] else 1
    finally:
        if d is not None:
            d.kill()
        if a.keep:
            log("work dir kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def verdict(a, rows, samples, final):
    tracked = final.get("tokenwatch_tokens_tracked", 0)
    evicted = final.get("tokenwatch_tokens_evicted_total", 0)
    full = next((r for r in rows if r["tracked"] >= a.max_tokens), rows[-1])
    rss_full, rss_last = full["rss_kb"], rows[-1]["rss_kb"]
    peak_after = max(s[1] for s in samples if s[0] >= 0)
    # Per CPU second of the daemon: on a shared machine the wall-clock rate
    # follows whatever else runs; the CPU cost of a line does not (much).
    second = rows[1]["cpu_rate"] if len(rows) > 1 else rows[0]["cpu_rate"]
    last = rows[-1]["cpu_rate"]
    checks = [
        ("tokens_tracked = max_tokens", tracked == a.max_tokens, "%d" % tracked),
        ("tokens_evicted_total = tokens - max_tokens", evicted == a.tokens - a.max_tokens,
         "%d" % evicted),
        ("RSS after the last chunk within 5%% of RSS when the table filled (chunk %d)"
         % full["chunk"], abs(rss_last - rss_full) <= 0.05 * rss_full,
         "%.1f -> %.1f MiB (%+.1f%%)" % (rss_full / 1024, rss_last / 1024,
                                        100.0 * (rss_last - rss_full) / rss_full)),
        ("peak RSS within 10% of RSS when the table filled", peak_after <= 1.10 * rss_full,
         "%.1f MiB" % (peak_after / 1024)),
        ("last chunk's rate (lines per CPU second) within 20% of the second chunk's",
         last >= 0.8 * second,
         "%.0f vs %.0f (%+.1f%%)" % (last, second, 100.0 * (last / second - 1))),
    ]
    return all(ok for _, ok, _ in checks), checks


def summary(a, rows, samples, hwm, final, rc):
    out = ["### Results (%s, %d CPUs, load average %s)"
           % (time.strftime("%Y-%m-%d"), os.cpu_count(),
              " ".join(open("/proc/loadavg").read().split()[:3])), ""]
    out.append("%d distinct tokens in %d chunks, max_tokens %d:"
               % (a.tokens, a.chunks, a.max_tokens))
    out.append("")
    out.append("| chunk | lines/s (wall) | daemon CPU s | lines per CPU s | RSS after (MiB) "
               "| tokens tracked | evicted |")
    out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        out.append("| %d | %.0f | %.2f | %.0f | %.1f | %d | %d |"
                   % (r["chunk"], r["rate"], r["cpu"], r["cpu_rate"], r["rss_kb"] / 1024,
                      r["tracked"], r["evicted"]))
    out.append("")
    out.append("RSS over time (every %.0f s; MiB):" % a.sample_s)
    out.append("")
    out.append("    " + "  ".join("%.0fs:%.0f" % (s[0], s[1] / 1024) for s in samples))
    out.append("")
    out.append("Peak RSS (VmHWM) %.1f MiB; at the end: tokens_tracked %d, "
               "tokens_evicted_total %d; SIGTERM exit %s."
               % (hwm / 1024, final.get("tokenwatch_tokens_tracked", 0),
                  final.get("tokenwatch_tokens_evicted_total", 0), rc))
    ok, checks = verdict(a, rows, samples, final)
    out.append("")
    out.append("| target | met | figure |")
    out.append("| --- | --- | --- |")
    for t, m, f in checks:
        out.append("| %s | %s | %s |" % (t, "yes" if m else "**no**", f))
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
