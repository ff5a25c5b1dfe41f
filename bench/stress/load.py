#!/usr/bin/env python3
"""
load.py — /metrics under ingestion load, and idle connections (issue 7
point 5). Run through bench/stress/load.sh, which builds the binary.

Phases, each printed as it ends and summed up in a Markdown report:
  0. reference: wrk against the idle daemon (what the machine itself does to
     the latency, without ingestion);
  1. paced ingestion: loadgen.py appends --rate lines/s (default 250,000)
     to the daemon's input; the achieved ingestion rate is measured from
     auth_token_check deltas over --window seconds, without wrk, then during
     `wrk -c 50 -d 30s --latency` on /metrics, then without wrk again;
     tokenwatch_input_lag_bytes at the end of each window shows whether the
     daemon kept up;
  2. saturated ingestion (capacity): the generator stops; a prepared chunk
     of --drain-lines lines is appended at once and the time the daemon
     takes to count it gives its top rate, alternately without and with wrk
     running (--drain-runs each);
  3. idle connections: with the paced generator running again, slowloris.py
     opens --conns connections (an unfinished request each, one byte added
     every 5 s so an idle timeout never fires) and holds them while a normal
     scrape from 127.0.0.1 is tried every 0.5 s with a 1 s deadline; for the
     production config and for the default (2048 connections), with the
     connections from one address and spread over 100 addresses.

Configs (see bench/README.md, "HTTP under load"):
  production: http.max_connections 1024, http.timeout_s 10 (per-address cap
              = max/4 = 256); default: 2048 (per-address cap 512).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.dont_write_bytecode = True   # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402
from stresslib import log  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROD_HTTP = {"max_connections": 1024, "timeout_s": 10}
DEFAULT_HTTP = {}   # max_connections 2048, timeout_s 10
DEFAULT_MAX_CONNECTIONS = 2048


def checks(d):
    return d.value("auth_token_check", input="gw")


def lag(d):
    return d.value("tokenwatch_input_lag_bytes", input="gw")


cpu_s = sl.cpu_seconds


def host_busy_s():
    """Busy CPU seconds of the whole machine (all cores) so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Window:
    """Ingestion between two moments: checks, seconds, daemon CPU, and the
    CPU the whole machine spent (other load on a shared box shows here)."""

    def __init__(self, d):
        self.d = d
        self.c0, self.t0 = checks(d), time.monotonic()
        self.cpu0, self.host0 = cpu_s(d.proc.pid), host_busy_s()

    def close(self):
        c1, t1 = checks(self.d), time.monotonic()
        self.seconds = t1 - self.t0
        self.lines = c1 - self.c0
        self.rate = self.lines / self.seconds
        self.cpu = (cpu_s(self.d.proc.pid) - self.cpu0) / self.seconds
        self.host_cpu = (host_busy_s() - self.host0) / self.seconds
        self.lag = lag(self.d)
        return self


def run_wrk(port, duration, conns=50, threads=2):
    p = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", "%ds" % duration,
                        "--latency", "http://127.0.0.1:%d/metrics" % port],
                       capture_output=True, text=True, timeout=duration + 60)
    return parse_wrk(p.stdout + p.stderr)


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not m:
        return float("nan")
    x = float(m.group(1))
    return {"us": x / 1000, "ms": x, "s": x * 1000, "m": x * 60000}[m.group(2)]


def parse_wrk(text):
    r = {"raw": text}
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        r["p" + pct] = to_ms(m.group(1)) if m else float("nan")
    m = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    r["max"] = to_ms(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    r["socket_detail"] = m.group(0) if m else "Socket errors: none"
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    r["errors"] = r["socket_errors"] + r["non2xx"]
    return r


def wait_caught_up(d, timeout=120):
    """Until the input lag is 0 and the counter stops moving."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        c = checks(d)
        if lag(d) == 0 and c == last:
            return c
        last = c
        time.sleep(0.3)
    raise SystemExit("the daemon did not catch up within %ds (lag %s)" % (timeout, lag(d)))


SENTINEL_RUNS = [0]


def sentinel_lines():
    """25 rejections of a new token: failure_burst (20 rejections in 300 s)
    reports it, and its event lands in the events file only once the
    analysis has judged every line before it. Returns (lines, token hint)."""
    SENTINEL_RUNS[0] += 1
    tok = "at-5e%014x" % SENTINEL_RUNS[0]
    st = sl.stamp()
    line = ("%s ip=10.9.9.9 user=sentinel token=%s path=/ result=denied\n" % (st, tok)).encode()
    return line * 25, tok[:3] + "\u2026" + tok[-4:]


def sentinel_seen(d, hint):
    try:
        with open(d.config["events_file"], "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    for line in data.split(b"\n")[:-1]:
        if b"10.9.9.9" in line:
            e = json.loads(line)
            if e.get("token_hint") == hint and e.get("ip") == "10.9.9.9":
                return True
    return False


def drain(d, inp, chunk, expect_lines):
    """Appends the prepared chunk at once (plus a sentinel); seconds until
    every line is counted and judged."""
    base = wait_caught_up(d)
    tail, hint = sentinel_lines()
    cpu0 = cpu_s(d.proc.pid)
    t0 = time.monotonic()
    with open(chunk, "rb") as src, open(inp, "ab") as dst:
        shutil.copyfileobj(src, dst, 16 << 20)
        dst.write(tail)
    while checks(d) < base + expect_lines + 25:
        time.sleep(0.01)
    while not sentinel_seen(d, hint):
        time.sleep(0.01)
    return time.monotonic() - t0, cpu_s(d.proc.pid) - cpu0


class Scraper(threading.Thread):
    """A normal scrape from 127.0.0.1 every `period` s with a 1 s deadline."""

    def __init__(self, port, period=0.5, deadline=1.0):
        super().__init__(daemon=True)
        self.url = "http://127.0.0.1:%d/metrics" % port
        self.period, self.deadline = period, deadline
        self.results = []   # (ok, seconds, error)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=self.deadline) as r:
                    r.read()
                    ok, err = r.status == 200, "" if r.status == 200 else str(r.status)
            except Exception as e:   # refused, reset, timeout: all a failed scrape
                ok, err = False, type(e).__name__ + ": " + str(e)[:60]
            dt = time.monotonic() - t0
            self.results.append((ok and dt <= self.deadline, dt, err))
            self.stop.wait(max(0.0, self.period - dt))


def slowloris(d, conns, sources, hold, workdir):
    ready = os.path.join(workdir, "slowloris.ready")
    if os.path.exists(ready):
        os.unlink(ready)
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "slowloris.py"), "--port",
                          str(d.port), "--conns", str(conns), "--sources", sources, "--hold",
                          str(hold), "--ready-file", ready], stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not os.path.exists(ready) and p.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.05)
    time.sleep(2.5)   # let the caps turn away whatever they turn away
    st = sl.proc_status(d.proc.pid)
    sc = Scraper(d.port)
    sc.start()
    out, _ = p.communicate(timeout=hold + 120)
    sc.stop.set()
    sc.join()
    res = json.loads(out)
    oks = [r for r in sc.results if r[0]]
    res.update({
        "scrapes": len(sc.results), "scrapes_ok": len(oks),
        "scrape_max_ms": max((r[1] for r in sc.results), default=0) * 1000,
        "scrape_errors": sorted({r[2] for r in sc.results if not r[0]})[:3],
        "threads": st.get("Threads"), "rss_kb": st.get("VmRSS"),
    })
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--phases", default="paced,drain,idle",
                    help="comma-separated subset of paced (with the idle-daemon reference), "
                         "drain, idle")
    ap.add_argument("--rate", type=int, default=250000)
    ap.add_argument("--window", type=int, default=30, help="seconds per paced window")
    ap.add_argument("--wrk-duration", type=int, default=30)
    ap.add_argument("--ref-duration", type=int, default=10,
                    help="seconds of wrk against the idle daemon first (reference)")
    ap.add_argument("--drain-lines", type=int, default=4000000)
    ap.add_argument("--drain-runs", type=int, default=3)
    ap.add_argument("--drain-wrk-duration", type=int, default=15,
                    help="wrk seconds around each saturated run (starts 2 s before it)")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--hold", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    a = ap.parse_args()
    phases = set(a.phases.split(","))
    if not phases <= {"paced", "drain", "idle"}:
        raise SystemExit("load: --phases takes paced, drain, idle")
    if not shutil.which("wrk"):
        raise SystemExit("load: wrk is not installed (apt-get install wrk)")

    work = tempfile.mkdtemp(prefix="tokenwatch-load.")
    daemons, gens = [], []

    def start_gen(inp):
        g = subprocess.Popen([sys.executable, os.path.join(HERE, "loadgen.py"), "--rate",
                              str(a.rate), inp], stdout=subprocess.PIPE, text=True)
        gens.append(g)
        return g

    def stop_gen(g):
        g.terminate()
        out, _ = g.communicate(timeout=30)
        return json.loads(out)

    report = {"rate_target": a.rate, "nproc": os.cpu_count(),
              "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    try:
        if phases & {"paced", "drain"}:
            inp = os.path.join(work, "gw.log")
            open(inp, "wb").close()
            d = sl.Daemon(a.bin, work, [{"name": "gw", "path": inp, "format": "generic-text",
                                         "start": "end"}], http=PROD_HTTP).start()
            daemons.append(d)
            log("daemon on port %d (max_connections %d)" % (d.port, PROD_HTTP["max_connections"]))
        if "paced" in phases:
            phase_paced(a, d, inp, report, start_gen, stop_gen)
        if "drain" in phases:
            phase_drain(a, d, inp, report)
        if phases & {"paced", "drain"}:
            d.stop()
        if "idle" in phases:
            phase_idle(a, work, report, daemons, start_gen, stop_gen)
        report["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    finally:
        for g in gens:
            if g.poll() is None:
                g.kill()
                g.wait()
        for dd in daemons:
            dd.kill()
        if a.keep:
            log("work dir kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print_summary(report, a)
    return 0 if verdict(report)[0] else 1


def phase_paced(a, d, inp, report, start_gen, stop_gen):
    """0 + 1: wrk against the idle daemon (what the machine itself does to
    latency), then paced ingestion without / with / without wrk."""
    ref = run_wrk(d.port, a.ref_duration)
    report["wrk_idle"] = {k: v for k, v in ref.items() if k != "raw"}
    log("wrk on the idle daemon (%d s): %d req, %.0f req/s, errors %d, p50 %.2f ms, "
        "p99 %.2f ms, max %.1f ms" % (a.ref_duration, ref["requests"], ref["rps"],
                                      ref["errors"], ref["p50"], ref["p99"], ref["max"]))
    g = start_gen(inp)
    log("generator at %d lines/s" % a.rate)
    time.sleep(5)
    paced = []
    for label in ("no wrk", "wrk", "no wrk (again)"):
        w = Window(d)
        wr = None
        if label == "wrk":
            wr = run_wrk(d.port, a.wrk_duration)
        else:
            time.sleep(a.window)
        w.close()
        paced.append((label, w, wr))
        log("paced %-15s %9.0f lines/s  lag %8.0f B  daemon cpu %.2f  host cpu %.2f%s"
            % (label, w.rate, w.lag, w.cpu, w.host_cpu,
               "" if not wr else "  wrk: %d req, %.0f req/s, errors %d, p50 %.2f ms, "
               "p99 %.2f ms, max %.1f ms" % (wr["requests"], wr["rps"], wr["errors"],
                                             wr["p50"], wr["p99"], wr["max"])))
    report["generator"] = stop_gen(g)
    report["paced"] = [{"label": lbl, "rate": w.rate, "lag": w.lag, "cpu": w.cpu,
                        "host_cpu": w.host_cpu, "seconds": w.seconds,
                        "wrk": {k: v for k, v in (wr or {}).items() if k != "raw"} or None}
                       for lbl, w, wr in paced]
    report["wrk_raw"] = paced[1][2]["raw"]


def phase_drain(a, d, inp, report):
    """2: saturated ingestion — how fast a prepared chunk is drained,
    alternately without and with wrk."""
    chunk = os.path.join(os.path.dirname(inp), "chunk.log")
    log("preparing a chunk of %d lines" % a.drain_lines)
    mk = sl.LineMaker(seed=11)
    st = sl.stamp().encode()
    with open(chunk, "wb") as f:
        for base in range(0, a.drain_lines, 100000):
            n = min(100000, a.drain_lines - base)
            f.write(b"".join(mk.line(sl.token_of(int(mk.rng.random() * 250000)), st)
                             for _ in range(n)))
    drains = {"no wrk": [], "wrk": []}
    wrk_drain = []
    for run in range(a.drain_runs):
        for label in ("no wrk", "wrk"):
            if label == "wrk":
                box = {}
                t = threading.Thread(target=lambda: box.update(
                    run_wrk(d.port, a.drain_wrk_duration)), daemon=True)
                t.start()
                time.sleep(2)
                secs, cpu = drain(d, inp, chunk, a.drain_lines)
                t.join()
                wrk_drain.append(box)
            else:
                secs, cpu = drain(d, inp, chunk, a.drain_lines)
            drains[label].append(a.drain_lines / secs)
            log("drain %-7s run %d: %d lines in %.2f s = %.0f lines/s (daemon CPU %.2f s)"
                % (label, run + 1, a.drain_lines, secs, a.drain_lines / secs, cpu))
    os.unlink(chunk)
    report["drain"] = drains
    report["drain_wrk"] = [{k: v for k, v in w.items() if k != "raw"} for w in wrk_drain]


def phase_idle(a, work, report, daemons, start_gen, stop_gen):
    """3: idle connections while ingestion goes on, for the production and
    the default config, from one address and from 100."""
    results = []
    for cfg_name, http in (("production", PROD_HTTP), ("default", DEFAULT_HTTP)):
        for sources in ("127.0.0.2", "127.0.1.1-100"):
            n = len(results)
            inp = os.path.join(work, "gw-%s-%d.log" % (cfg_name, n))
            open(inp, "wb").close()
            dd = sl.Daemon(a.bin, work, [{"name": "gw", "path": inp, "format": "generic-text",
                                          "start": "end"}],
                           http=http, name="tw-%s-%d" % (cfg_name, n)).start()
            daemons.append(dd)
            g = start_gen(inp)
            time.sleep(2)
            w = Window(dd)
            res = slowloris(dd, a.conns, sources, a.hold, work)
            w.close()
            stop_gen(g)
            os.unlink(inp)
            res.update({"config": cfg_name,
                        "max_connections": http.get("max_connections", DEFAULT_MAX_CONNECTIONS),
                        "from": sources, "ingest_rate": w.rate})
            results.append(res)
            log("slowloris %-10s max_conn %4d from %-14s: %4d connected, %4d turned away, "
                "%4d held to the end; scrapes %d/%d ok (max %.0f ms); %s threads; "
                "ingestion %.0f lines/s %s"
                % (cfg_name, res["max_connections"], sources, res["connected"],
                   res["closed_early"] + res["refused"], res["alive_end"], res["scrapes_ok"],
                   res["scrapes"], res["scrape_max_ms"], res["threads"], w.rate,
                   res["scrape_errors"]))
            dd.stop()
    report["slowloris"] = results


def verdict(r):
    """(all targets met, [(target, met, figure)]) for the phases that ran."""
    rows = []
    if "paced" in r:
        no1, wrk = r["paced"][0], r["paced"][1]
        # Against the window before wrk: the one after it also drains what
        # wrk left behind (its rate is above the generator's then).
        slow = 1 - wrk["rate"] / no1["rate"]
        rows += [
            ("ingestion >= 200,000 lines/s while wrk runs", wrk["rate"] >= 200000,
             "%.0f lines/s" % wrk["rate"]),
            ("wrk errors = 0", wrk["wrk"]["errors"] == 0, "%d" % wrk["wrk"]["errors"]),
            ("wrk p99 < 10 ms", wrk["wrk"]["p99"] < 10,
             "%.2f ms (idle daemon: %.2f ms)" % (wrk["wrk"]["p99"], r["wrk_idle"]["p99"])),
            ("paced ingestion slows < 10% under wrk", slow < 0.10, "%+.1f%%" % (-100 * slow)),
        ]
    if "drain" in r:
        dn, dw = sl.median(r["drain"]["no wrk"]), sl.median(r["drain"]["wrk"])
        rows.append(("(capacity) saturated ingestion slows < 10% under wrk", dw / dn > 0.90,
                     "%+.1f%% (%.0f -> %.0f lines/s)" % (100 * (dw / dn - 1), dn, dw)))
    for s in r.get("slowloris", []):
        rows.append(("%d idle connections from %s: every scrape ok within 1 s (%s)"
                     % (s["tried"], s["from"], s["config"]), s["scrapes_ok"] == s["scrapes"] > 0,
                     "%d/%d" % (s["scrapes_ok"], s["scrapes"])))
    return all(m for _, m, _ in rows), rows


def print_summary(r, a):
    out = ["### Results (%s, %d CPUs, load average %s at start, %s at end)"
           % (time.strftime("%Y-%m-%d"), r["nproc"], " ".join(r["loadavg_start"]),
              " ".join(r["loadavg_end"])), ""]
    if "paced" in r:
        ri = r["wrk_idle"]
        w = r["paced"][1]["wrk"]
        out.append("Paced ingestion (generator at %d lines/s, achieved %d lines/s):"
                   % (a.rate, r["generator"]["rate"]))
        out.append("")
        out.append("| window | ingestion (lines/s) | input lag at end | daemon CPU | machine CPU |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        for p in r["paced"]:
            out.append("| %s, %.0f s | %.0f | %.0f B | %.2f | %.2f |"
                       % (p["label"], p["seconds"], p["rate"], p["lag"], p["cpu"],
                          p["host_cpu"]))
        out.append("")
        out.append("Reference, `wrk -t2 -c50 -d%ds --latency /metrics` against the idle daemon "
                   "(no ingestion): %d requests (%.0f/s), errors %d, latency p50 %.2f ms, "
                   "p99 %.2f ms, max %.1f ms." % (a.ref_duration, ri["requests"], ri["rps"],
                                                  ri["errors"], ri["p50"], ri["p99"], ri["max"]))
        out.append("")
        out.append("`wrk -t2 -c50 -d%ds --latency /metrics` during the second window: %d "
                   "requests (%.0f/s), errors %d (%s, non-2xx %d), latency p50 %.2f ms, p75 "
                   "%.2f ms, p90 %.2f ms, p99 %.2f ms, max %.1f ms."
                   % (a.wrk_duration, w["requests"], w["rps"], w["errors"], w["socket_detail"],
                      w["non2xx"], w["p50"], w["p75"], w["p90"], w["p99"], w["max"]))
        out.append("")
    if "drain" in r:
        out.append("Saturated ingestion (%d lines appended at once; median of %d runs each):"
                   % (a.drain_lines, a.drain_runs))
        out.append("")
        out.append("| | lines/s (median) | runs |")
        out.append("| --- | ---: | --- |")
        for k in ("no wrk", "wrk"):
            out.append("| %s | %.0f | %s |" % (k, sl.median(r["drain"][k]),
                                              ", ".join("%.0f" % x for x in r["drain"][k])))
        dw = r["drain_wrk"]
        if dw and dw[0].get("requests"):
            out.append("")
            out.append("wrk during the saturated runs: p99 %s ms, errors %s."
                       % (", ".join("%.2f" % x["p99"] for x in dw),
                          ", ".join(str(x["errors"]) for x in dw)))
        out.append("")
    if "slowloris" in r:
        out.append("Idle connections (%d, unfinished requests, one byte every 5 s, held %d s) "
                   "while ingesting %d lines/s; a scrape from 127.0.0.1 every 0.5 s, 1 s "
                   "deadline:" % (a.conns, a.hold, a.rate))
        out.append("")
        out.append("| config | connections from | held by the daemon | turned away | "
                   "scrapes ok | slowest scrape | daemon threads | daemon RSS | "
                   "ingestion (lines/s) |")
        out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in r["slowloris"]:
            out.append("| %s (max_connections %d) | %s | %d | %d | %d/%d | %.0f ms | %s | "
                       "%.0f MiB | %.0f |"
                       % (s["config"], s["max_connections"],
                          "1 address" if s["sources"] == 1 else "%d addresses" % s["sources"],
                          s["alive_end"] + s["closed_later"], s["closed_early"] + s["refused"],
                          s["scrapes_ok"], s["scrapes"], s["scrape_max_ms"], s["threads"],
                          (s["rss_kb"] or 0) / 1024, s["ingest_rate"]))
        out.append("")
    ok, rows = verdict(r)
    out.append("| target | met | figure |")
    out.append("| --- | --- | --- |")
    for t, m, f in rows:
        out.append("| %s | %s | %s |" % (t, "yes" if m else "**no**", f))
    print("\n".join(out))
    if "wrk_raw" in r:
        sys.stderr.write("\nwrk output (paced window):\n" + r["wrk_raw"] + "\n")


if __name__ == "__main__":
    sys.exit(main())
