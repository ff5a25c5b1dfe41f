#!/usr/bin/env python3
"""
report.py — the table of bench/compare/run.sh, and its checks.

Reads the runs that run.sh recorded (one tab-separated line per run: job,
tool, input, run number, exit status, wall seconds, peak RSS KiB, user+system
CPU seconds, and what the tool counted as key=value pairs) and the
generator's known totals, and prints a Markdown table of medians: lines/s
(the input's lines divided by the run's wall time, start-up included, the
same for every tool), lines per CPU second (less disturbed by other load on
the machine; a tool that uses several threads spends more CPU seconds than
wall seconds), wall seconds, peak RSS, and how tokenwatch compares with each
peer on the same input.

It also checks that every run counted what it should: tokenwatch's
lines/checks/rejected and mtail's two counters equal the totals,
fail2ban-regex's "matched" equals the rejected lines, and tokenwatch finds
the same anomalies in the text and the JSON log (they hold the same events).
Each mismatch is printed as a warning on stderr; the exit status is 0 unless
the input files themselves cannot be read.

    python3 bench/compare/report.py RUNS.tsv TOTALS META.txt OUT.md

META.txt holds "key<TAB>value" lines for the header of OUT.md (command,
load averages, versions).
"""

import statistics
import sys

# The tokenwatch row that every peer is compared with, per input.
REFERENCE = "tw-big"


def read_kv(text):
    out = {}
    for item in text.split():
        if "=" in item:
            k, v = item.split("=", 1)
            out[k] = v
    return out


def fmt_int(x):
    return format(int(round(x)), ",")


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: report.py RUNS.tsv TOTALS META.txt OUT.md")
    runs_path, totals_path, meta_path, out_path = sys.argv[1:]
    with open(totals_path) as f:
        totals = {k: int(v) for k, v in read_kv(f.read()).items()}
    lines = totals["lines"]
    meta = []
    with open(meta_path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            meta.append((k, v))

    jobs = {}    # job -> dict(tool, input, runs=[...])
    order = []
    with open(runs_path) as f:
        for line in f:
            job, tool, inp, run, status, wall, rss, cpu, counted, probe = \
                (line.rstrip("\n").split("\t") + ["", ""])[:10]
            if job not in jobs:
                jobs[job] = {"tool": tool, "input": inp, "runs": []}
                order.append(job)
            jobs[job]["runs"].append({"run": int(run), "status": int(status), "wall": float(wall),
                                      "rss": int(rss), "cpu": float(cpu), "counted": read_kv(counted),
                                      "probe": float(probe) if probe else None})

    warnings = []

    def warn(msg):
        warnings.append(msg)
        print("compare: WARNING: " + msg, file=sys.stderr)

    rejected = totals["rejected"]
    anomalies = {}    # (job-kind, input) -> set of anomaly counts
    for job in order:
        j = jobs[job]
        kind = job.split(":")[0]
        for r in j["runs"]:
            where = "%s on %s, run %d" % (j["tool"], j["input"], r["run"])
            c = r["counted"]
            if r["status"] != 0:
                warn("%s exited with status %d" % (where, r["status"]))
                continue
            if kind.startswith("tw"):
                want = {"lines": lines, "checks": lines, "rejected": rejected, "parse_errors": 0}
                for k, v in want.items():
                    if k not in c:
                        warn("%s: no %s in the replay summary" % (where, k))
                    elif int(c[k]) != v:
                        warn("%s: %s=%s, expected %d" % (where, k, c[k], v))
                if "anomalies" in c:
                    anomalies.setdefault(kind, {}).setdefault(j["input"], set()).add(int(c["anomalies"]))
            elif kind == "mtail":
                for k, v in (("checks", lines), ("rejected", rejected)):
                    if k not in c:
                        warn("%s: mtail printed no %s counter" % (where, k))
                    elif int(c[k]) != v:
                        warn("%s: mtail counted %s=%s, expected %d" % (where, k, c[k], v))
            elif kind == "f2b":
                for k, v in (("lines", lines), ("matched", rejected)):
                    if k not in c:
                        warn("%s: no %s in fail2ban-regex's summary" % (where, k))
                    elif int(c[k]) != v:
                        warn("%s: fail2ban-regex %s=%s, expected %d" % (where, k, c[k], v))
    for kind, per_input in sorted(anomalies.items()):
        seen = set()
        for inp, counts in sorted(per_input.items()):
            if len(counts) != 1:
                warn("%s: anomaly counts differ between runs on %s: %s" % (kind, inp, sorted(counts)))
            seen |= counts
        if len(per_input) > 1 and len(seen) != 1:
            warn("%s: text and JSON hold the same events but gave %s anomalies" %
                 (kind, ", ".join("%s %s" % (i, sorted(c)) for i, c in sorted(per_input.items()))))

    rows = {}
    for job in order:
        j = jobs[job]
        ok = [r for r in j["runs"] if r["status"] == 0]
        if not ok:
            rows[job] = None
            continue
        wall = statistics.median(r["wall"] for r in ok)
        cpu = statistics.median(r["cpu"] for r in ok)
        rss = statistics.median(r["rss"] for r in ok) / 1024.0
        probes = [r["probe"] for r in ok if r["probe"] is not None]
        rows[job] = {"wall": wall, "lps": lines / max(wall, 0.01), "cps": lines / max(cpu, 0.01),
                     "rss": rss, "n": len(ok), "of": len(j["runs"]),
                     "probe": "%.3f" % statistics.median(probes) if probes else "—"}

    out = []
    out.append("| tool | input | lines/s | lines per CPU s | seconds | peak RSS MiB "
               "| tokenwatch ÷ tool, lines/s | tokenwatch ÷ tool, RSS | core probe s |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for job in order:
        j, r = jobs[job], rows[job]
        if r is None:
            out.append("| %s | %s | failed | | | | | | |" % (j["tool"], j["input"]))
            continue
        ref = rows.get("%s:%s" % (REFERENCE, job.split(":", 1)[1]))
        if job.startswith("tw") or ref is None:
            ratio_lps = ratio_rss = "—"
        else:
            ratio_lps = "%.1f×" % (ref["lps"] / r["lps"])
            ratio_rss = "%.2f×" % (ref["rss"] / r["rss"])
        runs = "" if r["n"] == r["of"] else " (%d of %d runs ok)" % (r["n"], r["of"])
        out.append("| %s | %s | %s | %s | %.2f | %.1f | %s | %s | %s |%s" %
                   (j["tool"], j["input"], fmt_int(r["lps"]), fmt_int(r["cps"]), r["wall"],
                    r["rss"], ratio_lps, ratio_rss, r["probe"], runs))
    table = "\n".join(out)
    print()
    print(table)
    print()

    with open(out_path, "w", encoding="utf-8") as f:
        f.write("# bench/compare results\n\n")
        f.write("Written by `bench/compare/run.sh`; see bench/README.md for what each row runs.\n\n")
        for k, v in meta:
            f.write("- %s: %s\n" % (k, v))
        f.write("\n%s\n\n" % table)
        f.write("All figures are medians over the runs. lines/s = %s lines ÷ the wall time of\n"
                "the process (start-up, config and program loading included, for every tool\n"
                "alike); lines per CPU s divides by its user + system CPU time instead, which\n"
                "other load on the machine disturbs less. The ratios compare the tokenwatch row\n"
                "with the GeoLite2-sized database with each peer on the same input (lines/s).\n"
                "The core probe (bench/core_probe.c) is the median over the runs of the slower\n"
                "of the probes before and after each run: about 0.10 s when the cores are free,\n"
                "0.14-0.20 s when another tenant's hyperthread shares them (bench/README.md,\n"
                "\"Shared cores\"); rows with similar figures ran on cores of similar speed.\n"
                % fmt_int(lines))
        if warnings:
            f.write("\nWarnings:\n\n")
            for w in warnings:
                f.write("- %s\n" % w)
        else:
            f.write("\nEvery run counted what it should (checks %s, rejected %s; fail2ban-regex\n"
                    "matched the rejected lines; tokenwatch found the same anomalies in both inputs).\n"
                    % (fmt_int(lines), fmt_int(rejected)))
    if warnings:
        print("compare: %d warning(s); see above" % len(warnings), file=sys.stderr)
    else:
        print("compare: every run counted what it should", file=sys.stderr)


if __name__ == "__main__":
    main()
