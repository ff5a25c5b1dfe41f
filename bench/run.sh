#!/usr/bin/env bash
# bench/run.sh — replay throughput and peak memory of tokenwatch.
#
# Builds a Release binary into build-bench/, generates (or reuses) the
# benchmark logs, runs `tokenwatch replay` on each format BENCH_RUNS times
# and prints the medians as a Markdown table. With detection on, each run is
# made with "threads": 1 and 2 (BENCH_THREADS), and a second table gives the
# ratio and where the time went. See bench/README.md.
#
# Environment:
#   BENCH_LINES   lines per format (default 1000000)
#   BENCH_RUNS    runs per format (default 3)
#   BENCH_ADDRESSES  home (default) or random: where the checks come from
#                 (bench/gen_logs.py --addresses)
#   BENCH_DATA    where the generated logs are cached (default
#                 ${TMPDIR:-/tmp}/tokenwatch-bench-data-$BENCH_LINES-$BENCH_ADDRESSES)
#   BENCH_CITY_DB a City database to use instead of bench.json's test one
#                 (e.g. the GeoLite2-sized one of bench/gen_geoip_big.pl)
#   BENCH_BUILD   build directory (default <repo>/build-bench)
#   BENCH_MODES   "count detect" (default), or one of them
#   BENCH_THREADS "1 2" (default): the "threads" settings of detect runs
#                 (count runs have one thread's work only: threads "-")
#   BENCH_NO_GNU_TIME=1  measure peak RSS without /usr/bin/time (sampled VmHWM)
#   BENCH_PROBE=0 no core probe (bench/core_probe.c) around the runs
#   BENCH_WAIT_FREE=SECONDS  before each run, probe until the cores are free
#                 (see "Shared cores" in bench/README.md), at most SECONDS
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LINES=${BENCH_LINES:-1000000}
RUNS=${BENCH_RUNS:-3}
ADDRESSES=${BENCH_ADDRESSES:-home}
DATA=${BENCH_DATA:-${TMPDIR:-/tmp}/tokenwatch-bench-data-$LINES-$ADDRESSES}
CITY_DB=${BENCH_CITY_DB:-}
BUILD=${BENCH_BUILD:-$ROOT/build-bench}
CONFIG=$ROOT/bench/bench.json
FORMATS="generic-text generic-json"
# count: parse and count only (replay --no-detect); detect: with detection and
# the test GeoIP database, as configured in bench/bench.json.
MODES=${BENCH_MODES:-"count detect"}
THREADS=${BENCH_THREADS:-"1 2"}

echo "building Release into $BUILD ..." >&2
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target tokenwatch >/dev/null
BIN=$BUILD/tokenwatch
# How much of each CPU we get, before and after every run (bench/README.md
# "Shared cores"): a busy hyperthread sibling slows everything by a third.
PROBE=
if [ "${BENCH_PROBE:-1}" != 0 ]; then
    PROBE=$BUILD/core_probe
    ${CC:-cc} -O2 -std=c11 -o "$PROBE" "$ROOT/bench/core_probe.c"
fi

need_gen=0
for f in $FORMATS; do
    [ -s "$DATA/bench-$f.log" ] || need_gen=1
done
if [ "$need_gen" = 1 ]; then
    echo "generating $LINES lines per format into $DATA ..." >&2
    python3 "$ROOT/bench/gen_logs.py" --lines "$LINES" --addresses "$ADDRESSES" "$DATA"
else
    echo "reusing logs in $DATA" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokenwatch-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# bench.json with absolute paths and "threads" set, one per setting.
for t in $THREADS; do
    python3 - "$CONFIG" "$t" "$WORK/bench-t$t.json" "$CITY_DB" <<'PY'
import json, os, sys
src, threads, out, city = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
base = os.path.dirname(os.path.abspath(src))
cfg = json.load(open(src))
for key in ("formats_dir", "rules_file"):
    cfg[key] = os.path.normpath(os.path.join(base, cfg[key]))
for key in ("city_db", "asn_db"):
    if key in cfg.get("geoip", {}):
        cfg["geoip"][key] = os.path.normpath(os.path.join(base, cfg["geoip"][key]))
if city:
    cfg["geoip"]["city_db"] = os.path.abspath(city)
cfg["threads"] = threads
json.dump(cfg, open(out, "w"), indent=2)
PY
done

# Runs one replay; prints "summary-line<TAB>maxrss_kb<TAB>cpu_s<TAB>threads-line"
# (cpu_s: user + system seconds of the process, empty without GNU time).
run_once() {
    local fmt=$1 log=$2 mode=$3 threads=$4 rss cpu=
    local extra=() config=$CONFIG
    [ "$mode" = count ] && extra=(--no-detect)
    [ "$threads" != - ] && config=$WORK/bench-t$threads.json
    if [ -x /usr/bin/time ] && [ -z "${BENCH_NO_GNU_TIME:-}" ]; then
        if ! /usr/bin/time -v -o "$WORK/time.txt" \
            "$BIN" replay -c "$config" --format "$fmt" "${extra[@]}" "$log" >/dev/null 2>"$WORK/stderr"; then
            echo "bench: replay of $log failed:" >&2
            cat "$WORK/stderr" "$WORK/time.txt" >&2
            exit 1
        fi
        rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$WORK/time.txt")
        cpu=$(awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ {s += $2} END {print s}' \
            "$WORK/time.txt")
    else
        # No GNU time. ru_maxrss of a child of python would include the
        # forked python image, so sample the child's own VmHWM (peak RSS of
        # its address space after exec) every 5 ms instead.
        if ! python3 - "$WORK/rss" "$BIN" replay -c "$config" --format "$fmt" "${extra[@]}" "$log" \
            >/dev/null 2>"$WORK/stderr" <<'PY'
import subprocess, sys, time
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
peak = 0
while p.poll() is None:
    try:
        with open("/proc/%d/status" % p.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.005)
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % peak)
sys.exit(p.returncode)
PY
        then
            echo "bench: replay of $log failed:" >&2
            cat "$WORK/stderr" >&2
            exit 1
        fi
        rss=$(cat "$WORK/rss")
    fi
    local summary
    summary=$(grep '^replay: ' "$WORK/stderr" | tail -n 1 || true)
    if [ -z "$summary" ]; then
        echo "bench: no replay summary for $fmt; stderr was:" >&2
        cat "$WORK/stderr" >&2
        exit 1
    fi
    local threads_line
    threads_line=$(grep '^threads: ' "$WORK/stderr" | tail -n 1 || true)
    printf '%s\t%s\t%s\t%s\n' "$summary" "$rss" "$cpu" "$threads_line"
}

# The fastest probe so far; a probe within FREE_RATIO of it finds the cores
# free (the report below uses the same ratio).
FREE_RATIO=1.15
WAIT_FREE=${BENCH_WAIT_FREE:-0}
FASTEST_PROBE=
note_probe() {
    if [ -z "$FASTEST_PROBE" ] || awk -v a="$1" -v b="$FASTEST_PROBE" 'BEGIN { exit !(a < b) }'; then
        FASTEST_PROBE=$1
    fi
}
probe_free() { awk -v a="$1" -v b="$FASTEST_PROBE" -v r="$FREE_RATIO" 'BEGIN { exit !(a <= r * b) }'; }
if [ -n "$PROBE" ] && [ "$WAIT_FREE" -gt 0 ]; then
    for _ in 1 2 3 4 5; do note_probe "$("$PROBE")"; done   # a reference to wait for
fi

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Runs alternate between modes, formats and thread settings so that load
# from elsewhere on the machine spreads over all of them.
for i in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
        for f in $FORMATS; do
            settings=-
            [ "$mode" = detect ] && settings=$THREADS
            for t in $settings; do
                log=$DATA/bench-$f.log
                bytes=$(stat -c %s "$log")
                echo "replay $f ($mode, threads $t) run $i/$RUNS ..." >&2
                p0=- p1=-
                if [ -n "$PROBE" ]; then
                    p0=$("$PROBE")
                    note_probe "$p0"
                    waited=0
                    while [ "$waited" -lt "$WAIT_FREE" ] && ! probe_free "$p0"; do
                        sleep 1
                        waited=$((waited + 1))
                        p0=$("$PROBE")
                        note_probe "$p0"
                    done
                fi
                run_once "$f" "$log" "$mode" "$t" >"$WORK/one"
                if [ -n "$PROBE" ]; then
                    p1=$("$PROBE")
                    note_probe "$p1"
                fi
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$f ($mode)" "$t" "$bytes" "$(cat "$WORK/one")" \
                    "$p0" "$p1" >>"$RESULTS"
            done
        done
    done
done

python3 - "$RESULTS" "$LINES" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "$ADDRESSES" \
    "${CITY_DB:-the test database of bench.json}" "${FASTEST_PROBE:--}" "$FREE_RATIO" <<'PY'
import re, statistics, sys
rows = {}
probes = []
for line in open(sys.argv[1]):
    fmt, threads, size, summary, rss, cpu, tline, p0, p1 = line.rstrip("\n").split("\t")
    kv = dict(re.findall(r"(\w+)=([0-9.]+)", summary))
    kv["cpu_s"] = cpu or "0"
    kv.update({"t_" + k: v for k, v in re.findall(r"(\w+)=([0-9.]+)", tline)})
    # The slower of the probes around the run (None without probes).
    kv["probe"] = max(float(p0), float(p1)) if p0 != "-" else None
    if p0 != "-":
        probes += [float(p0), float(p1)]
    rows.setdefault((fmt, threads), []).append((int(size), kv, int(rss)))
want = int(sys.argv[2])
# A run had its cores to itself when neither probe around it took more than
# FREE_RATIO times the fastest probe of the whole session.
FREE = float(sys.argv[8])
# The fastest of every probe the script ran (also those it waited with).
seen = probes + ([float(sys.argv[7])] if sys.argv[7] != "-" else [])
fastest = min(seen) if seen else None
free = lambda kv: fastest is not None and kv["probe"] <= FREE * fastest
print()
print("| format (mode) | threads | lines | file MB | lines/s (median) | MB/s (median) | seconds (median) | peak RSS MiB | lines/s (median, cores free) | runs with cores free |")
print("|---|:-:|---:|---:|---:|---:|---:|---:|---:|---:|")
bad = False
for (fmt, threads), runs in rows.items():
    size = runs[0][0]
    lines = int(runs[0][1]["lines"])
    if lines != want or int(runs[0][1]["checks"]) != want:
        bad = True
        print("bench: %s: replay saw lines=%s checks=%s, expected %d" %
              (fmt, runs[0][1]["lines"], runs[0][1]["checks"], want), file=sys.stderr)
    lps = statistics.median(float(r[1]["lines_per_s"]) for r in runs)
    mbs = statistics.median(float(r[1]["mb_per_s"]) for r in runs)
    secs = statistics.median(float(r[1]["seconds"]) for r in runs)
    rss = max(r[2] for r in runs) / 1024.0
    free_runs = [r for r in runs if free(r[1])]
    free_lps = (format(int(round(statistics.median(float(r[1]["lines_per_s"]) for r in free_runs))), ",")
                if free_runs else "-")
    print("| %s | %s | %d | %.1f | %s | %.1f | %.3f | %.1f | %s | %s |" %
          (fmt, threads, lines, size / 1e6, format(int(round(lps)), ","), mbs, secs, rss,
           free_lps, "%d of %d" % (len(free_runs), len(runs)) if fastest else "-"))
print()
print("(%d runs per row; peak RSS is the maximum over runs)" % len(next(iter(rows.values()))))
if fastest:
    print("core probe (bench/core_probe.c, slowest CPU): fastest %.3f s, median %.3f s, slowest %.3f s;"
          % (fastest, statistics.median(probes), max(probes)))
    print("cores free = both probes around the run within %d%% of the fastest" % round((FREE - 1) * 100))

# Two threads against one, per format: the ratio of the medians, and where
# the time went in the two-thread runs (each thread's CPU seconds; a reader
# that often waits for a free batch means the analysis thread is the
# bottleneck, an analysis thread that often waits for work means the reader is).
pairs = [(f, rows[(f, "1")], rows[(f, "2")]) for f, t in rows
         if t == "2" and (f, "1") in rows]
if pairs:
    print()
    print("| format (mode) | lines/s, 2 threads / 1 | same, cores free | reader CPU s | analysis CPU s | "
          "1-thread CPU s | reader waits | analysis waits | bottleneck |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for fmt, one, two in pairs:
        med = lambda runs, k: statistics.median(float(r[1].get(k, 0)) for r in runs)
        ratio = med(two, "lines_per_s") / med(one, "lines_per_s")
        one_free = [r for r in one if free(r[1])]
        two_free = [r for r in two if free(r[1])]
        ratio_free = ("%.2fx" % (med(two_free, "lines_per_s") / med(one_free, "lines_per_s"))
                      if one_free and two_free else "-")
        rcpu, acpu = med(two, "t_reader_cpu_s"), med(two, "t_analysis_cpu_s")
        rw, aw = med(two, "t_reader_waits"), med(two, "t_analysis_waits")
        cpu1 = med(one, "cpu_s")
        side = "analysis" if acpu > rcpu * 1.1 else ("reader" if rcpu > acpu * 1.1 else "balanced")
        print("| %s | %.2fx | %s | %.3f | %.3f | %.3f | %d | %d | %s |" %
              (fmt, ratio, ratio_free, rcpu, acpu, cpu1, rw, aw, side))
print()
print("load average: %s at start, %s at the end (the ratio needs two idle cores)" %
      (sys.argv[3], sys.argv[4]))
print("addresses: %s (bench/gen_logs.py); detect runs' City database: %s" %
      (sys.argv[5], sys.argv[6]))
sys.exit(1 if bad else 0)
PY
