#!/usr/bin/env bash
# bench/compare/run.sh — tokenwatch side by side with mtail and fail2ban on
# the same events (issue 7, points 1 and 2).
#
#   bench/compare/run.sh [--lines N] [--runs K] [--threads T] [--data DIR]
#                        [--addresses home|random] [--geoip-db FILE]
#                        [--build DIR] [--no-install]
#
# Generates N events (default 1,000,000) with bench/gen_logs.py as a
# generic-text log and the same events as generic-json lines
# (text_to_json.py), builds a GeoLite2-sized City database
# (bench/gen_geoip_big.pl), then runs K rounds (default 3), each row once per
# round (text rows, then JSON rows), so that load from elsewhere on the
# machine spreads over all of them. The rows, per input:
#   tokenwatch replay -c CFG --format F LOG   detection on, default rules,
#                                             once with the test GeoIP
#                                             database, once with the big one
#   mtail --one_shot --progs PROG --logs LOG  mtail-text/ or mtail-json/
#   fail2ban-regex -r LOG FILTER              fail2ban/tokenwatch-{text,json}.conf
# Each run is measured with /usr/bin/time -f "%e %M %U %S" (wall seconds, peak
# RSS, user and system CPU seconds), with bench/core_probe.c before and after
# it (how fast the cores were: bench/README.md "Shared cores").
# Prints a Markdown table of medians and writes it, with the machine's load
# average and the tools' versions, to bench/compare/results.md. Warns when a
# tool did not count what the generator wrote (report.py).
#
# Missing peers are installed from Debian (apt-get install mtail fail2ban,
# as root or through passwordless sudo); a peer that cannot be installed is
# skipped, saying so. On a host running systemd, Debian's fail2ban package
# starts fail2ban.service with its sshd jail: the script says so when it
# finds it running after installing it, and leaves it alone.
#
# Options:
#   --lines N         events per input (default 1000000)
#   --runs K          runs per tool and input (default 3)
#   --threads T       tokenwatch's "threads" setting (1 or 2; default: not set,
#                     so tokenwatch's own default). The tokenwatch rows name
#                     the thread count replay reports.
#   --data DIR        keep the logs and the big database in DIR and reuse
#                     them on the next run with the same N and --addresses
#                     (default: a temporary directory, removed at exit)
#   --addresses MODE  where the checks come from (bench/gen_logs.py):
#                     home (default) — every user's tokens from its home
#                     address and one neighbour, 1% of the tokens leaked and
#                     also used from anywhere; random — every check from a
#                     random address, so with the big database every token
#                     appears to travel and is flagged (the worst case)
#   --geoip-db FILE   the GeoLite2-sized database: used if it exists, built
#                     there otherwise (default: in the data directory)
#   --build DIR       tokenwatch Release build directory
#                     (default <repo>/build-bench, as bench/run.sh)
#   --no-install      never run apt-get; skip what is missing
#
# Exit status: 0 when the comparison ran (even with warnings or a skipped
# peer), 1 on the script's own errors (build, generation, no /usr/bin/time),
# 2 on bad usage.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LINES=1000000
RUNS=3
THREADS=
DATA=
BIGDB=
ADDRESSES=home
BUILD=$ROOT/build-bench
INSTALL=1
CMDLINE="bench/compare/run.sh${*:+ $*}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-2}"
}
say() { echo "compare: $*" >&2; }
die() { echo "compare: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
    --lines) [ $# -ge 2 ] || usage; LINES=$2; shift 2 ;;
    --runs) [ $# -ge 2 ] || usage; RUNS=$2; shift 2 ;;
    --threads) [ $# -ge 2 ] || usage; THREADS=$2; shift 2 ;;
    --data) [ $# -ge 2 ] || usage; DATA=$2; shift 2 ;;
    --geoip-db) [ $# -ge 2 ] || usage; BIGDB=$2; shift 2 ;;
    --addresses) [ $# -ge 2 ] || usage; ADDRESSES=$2; shift 2 ;;
    --build) [ $# -ge 2 ] || usage; BUILD=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help) usage 0 ;;
    *) echo "compare: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ $LINES =~ ^[1-9][0-9]*$ ]] || { echo "compare: --lines takes a positive integer" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "compare: --runs takes a positive integer" >&2; exit 2; }
[[ -z $THREADS || $THREADS =~ ^[12]$ ]] || { echo "compare: --threads takes 1 or 2" >&2; exit 2; }
[[ $ADDRESSES =~ ^(home|random)$ ]] || { echo "compare: --addresses takes home or random" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokenwatch-compare.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
[ -n "$DATA" ] || DATA=$WORK/data
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
[ -n "$BIGDB" ] || BIGDB=$DATA/GeoLite2-City-Big.mmdb

# ---- tools ------------------------------------------------------------------

as_root() {
    if [ "$(id -u)" = 0 ]; then
        env DEBIAN_FRONTEND=noninteractive "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n env DEBIAN_FRONTEND=noninteractive "$@"
    else
        return 1
    fi
}

APT_UPDATED=0
# install PACKAGE...: apt-get install, with one apt-get update on failure.
install_pkgs() {
    [ "$INSTALL" = 1 ] || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    say "installing $* from Debian (apt-get install -y $*) ..."
    if as_root apt-get install -y -q "$@" >"$WORK/apt.log" 2>&1; then
        return 0
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        APT_UPDATED=1
        as_root apt-get update -q >>"$WORK/apt.log" 2>&1 || true
        as_root apt-get install -y -q "$@" >>"$WORK/apt.log" 2>&1 && return 0
    fi
    say "apt-get install $* failed:"
    tail -n 5 "$WORK/apt.log" >&2
    return 1
}

# have COMMAND PACKAGE: the command exists, or is installed now.
have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    install_pkgs "$2" >&2 || true
    command -v "$1" >/dev/null 2>&1
}

warn_service() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 &&
        systemctl is-active --quiet "$1" 2>/dev/null; then
        say "note: installing $1 started $1.service on this host;" \
            "'systemctl disable --now $1' stops it (this script leaves it alone)"
    fi
}

[ -x /usr/bin/time ] || install_pkgs time || true
[ -x /usr/bin/time ] || die "/usr/bin/time (Debian package 'time') is needed to measure the runs"

HAVE_MTAIL=0
HAVE_F2B=0
had_mtail=$(command -v mtail || true)
had_f2b=$(command -v fail2ban-regex || true)
if have mtail mtail; then
    HAVE_MTAIL=1
    [ -n "$had_mtail" ] || warn_service mtail
else
    say "mtail is not installed and could not be installed: skipping the mtail rows"
fi
if have fail2ban-regex fail2ban; then
    HAVE_F2B=1
    [ -n "$had_f2b" ] || warn_service fail2ban
else
    say "fail2ban-regex is not installed and could not be installed: skipping the fail2ban rows"
fi

say "building tokenwatch (Release) into $BUILD ..."
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF &&
    cmake --build "$BUILD" -j"$(nproc)" --target tokenwatch; } >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log" >&2
    die "tokenwatch did not build"
fi
TW=$BUILD/tokenwatch
# The core probe of bench/run.sh (bench/README.md "Shared cores"), before
# and after every run: whether the tools ran on cores of the same speed.
PROBE=$BUILD/core_probe
${CC:-cc} -O2 -std=c11 -o "$PROBE" "$ROOT/bench/core_probe.c" || die "cannot compile bench/core_probe.c"

# ---- data -------------------------------------------------------------------

TEXT=$DATA/bench-generic-text.log
JSON=$DATA/bench-generic-json.log
TOTALS=$DATA/totals-$LINES-$ADDRESSES
if [ -s "$TEXT" ] && [ -s "$JSON" ] && [ -s "$TOTALS" ] &&
    grep -q "^lines=$LINES " "$TOTALS"; then
    say "reusing the logs in $DATA"
else
    # The logs are about to change: no totals file may vouch for them.
    rm -f "$DATA"/totals-*
    say "generating $LINES events ($ADDRESSES addresses) into $DATA ..."
    python3 "$ROOT/bench/gen_logs.py" --lines "$LINES" --addresses "$ADDRESSES" \
        --formats generic-text "$DATA" ||
        die "bench/gen_logs.py failed"
    python3 "$HERE/text_to_json.py" "$TEXT" "$JSON" >"$TOTALS.tmp" ||
        die "text_to_json.py failed"
    mv "$TOTALS.tmp" "$TOTALS"
fi
say "known totals: $(cat "$TOTALS")"

HAVE_BIG=1
if [ -s "$BIGDB" ]; then
    say "using the GeoLite2-sized database $BIGDB"
else
    if ! perl -MMaxMind::DB::Writer::Tree -MMaxMind::DB::Reader -e 1 2>/dev/null; then
        install_pkgs libmaxmind-db-writer-perl libmaxmind-db-reader-perl || true
    fi
    if perl -MMaxMind::DB::Writer::Tree -MMaxMind::DB::Reader -e 1 2>/dev/null; then
        say "building the GeoLite2-sized database $BIGDB (a few minutes, ~1 GB of memory) ..."
        perl "$ROOT/bench/gen_geoip_big.pl" "$BIGDB" >"$WORK/geoip.out" 2>"$WORK/geoip.err" ||
            { cat "$WORK/geoip.err" >&2; die "bench/gen_geoip_big.pl failed"; }
        cat "$WORK/geoip.out" >&2
        # Kept beside the database, for the results of later runs that reuse it.
        cp "$WORK/geoip.out" "$BIGDB.txt"
    else
        say "MaxMind::DB::Writer is missing (libmaxmind-db-writer-perl): skipping the big-database rows"
        HAVE_BIG=0
    fi
fi
BIG_DESC="not built"
if [ "$HAVE_BIG" = 1 ]; then
    BIG_DESC="$(basename "$BIGDB"), $(stat -c %s "$BIGDB") bytes"
    # What gen_geoip_big.pl said when it built this file, if it is still beside it.
    if [ -s "$BIGDB.txt" ] && [ ! "$BIGDB.txt" -ot "$BIGDB" ]; then
        desc=$(sed -n 's/^wrote [^:]*: //p' "$BIGDB.txt")
        hist=$(sed -n 's/^IPv4 prefix lengths: //p' "$BIGDB.txt")
        BIG_DESC="$(basename "$BIGDB"), ${desc:-$(stat -c %s "$BIGDB") bytes}${hist:+; IPv4 prefix lengths $hist}"
    fi
fi

# Config files with absolute paths and a private state_dir (replay keeps its
# token-id key there), made from bench/compare/tokenwatch.json.
make_config() {
    python3 - "$HERE/tokenwatch.json" "$1" "$2" "$3" "$THREADS" <<'PY'
import json, os, sys
src, dst, state, city, threads = sys.argv[1:]
with open(src) as f:
    c = json.load(f)
base = os.path.dirname(os.path.abspath(src))
for k in ("formats_dir", "rules_file"):
    c[k] = os.path.normpath(os.path.join(base, c[k]))
c["geoip"]["city_db"] = os.path.abspath(city) if city else \
    os.path.normpath(os.path.join(base, c["geoip"]["city_db"]))
c["state_dir"] = state
if threads:
    c["threads"] = int(threads)
with open(dst, "w") as f:
    json.dump(c, f, indent=2)
PY
}
make_config "$WORK/tw-test.json" "$WORK/state-test" ""
[ "$HAVE_BIG" = 0 ] || make_config "$WORK/tw-big.json" "$WORK/state-big" "$BIGDB"
for cfg in "$WORK"/tw-*.json; do
    "$TW" check -c "$cfg" >"$WORK/check.out" 2>&1 ||
        { cat "$WORK/check.out" >&2; die "tokenwatch check -c $cfg failed"; }
done

# The thread count replay uses (it prints "threads: N ..." when N > 1).
TW_THREADS=$("$TW" replay -c "$WORK/tw-test.json" --format generic-text /dev/null 2>&1 >/dev/null |
    sed -n 's/^threads: \([0-9]*\).*/\1/p' | head -n 1)
TW_THREADS=${TW_THREADS:-1}
if [ "$TW_THREADS" = 1 ]; then TW_THREADS_DESC="1 thread"; else TW_THREADS_DESC="$TW_THREADS threads"; fi

# ---- runs -------------------------------------------------------------------

# job ids: KIND:INPUT, in the order they alternate within a round.
JOBS=()
for input in text json; do
    JOBS+=("tw-test:$input")
    [ "$HAVE_BIG" = 0 ] || JOBS+=("tw-big:$input")
    [ "$HAVE_MTAIL" = 0 ] || JOBS+=("mtail:$input")
    [ "$HAVE_F2B" = 0 ] || JOBS+=("f2b:$input")
done

job_tool() {
    case $1 in
    tw-test:*) echo "tokenwatch replay ($TW_THREADS_DESC), test GeoIP db (60 networks)" ;;
    tw-big:*) echo "tokenwatch replay ($TW_THREADS_DESC), GeoLite2-sized db" ;;
    mtail:*) echo "mtail --one_shot" ;;
    f2b:*) echo "fail2ban-regex" ;;
    esac
}

# run_job JOB: runs it once under /usr/bin/time; sets STATUS, WALL, RSS, CPU
# and COUNTED (key=value pairs of what the tool counted).
run_job() {
    local job=$1 kind=${1%%:*} input=${1#*:}
    local log fmt
    if [ "$input" = text ]; then log=$TEXT fmt=generic-text; else log=$JSON fmt=generic-json; fi
    local cmd=()
    case $kind in
    tw-test | tw-big)
        cmd=("$TW" replay -c "$WORK/$kind.json" --format "$fmt" "$log") ;;
    mtail)
        cmd=(mtail --one_shot --one_shot_format json --logtostderr --address 127.0.0.1 --port 0
             --progs "$HERE/mtail-$input" --logs "$log") ;;
    f2b)
        cmd=(fail2ban-regex -r --print-no-missed --print-no-ignored "$log"
             "$HERE/fail2ban/tokenwatch-$input.conf") ;;
    esac
    STATUS=0
    /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "${cmd[@]}" >"$WORK/out" 2>"$WORK/err" </dev/null ||
        STATUS=$?
    # GNU time prints "Command exited with non-zero status N" before the figures.
    local user sys
    read -r WALL RSS user sys < <(tail -n 1 "$WORK/time")
    CPU=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN { printf "%.2f", u + s }')
    COUNTED=
    if [ "$STATUS" != 0 ]; then
        say "$job: '${cmd[*]}' exited with status $STATUS:"
        tail -n 5 "$WORK/err" >&2
        return
    fi
    case $kind in
    tw-*)
        COUNTED=$(grep -hE '^(replay|detect): ' "$WORK/err" | sed 's/^[a-z]*: //' | tr '\n' ' ') ;;
    mtail)
        COUNTED=$(python3 - "$WORK/out" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(0)
for name, key in (("auth_token_check", "checks"), ("auth_token_rejected", "rejected")):
    total = sum(lv["Value"]["Value"] for m in d.get(name, []) for lv in m.get("LabelValues", []))
    print("%s=%d" % (key, total), end=" ")
PY
        ) ;;
    f2b)
        COUNTED=$(sed -nE 's/^Lines: ([0-9]+) lines, ([0-9]+) ignored, ([0-9]+) matched, ([0-9]+) missed.*/lines=\1 ignored=\2 matched=\3 missed=\4/p' "$WORK/out") ;;
    esac
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS=$WORK/runs.tsv
: >"$RESULTS"
for i in $(seq 1 "$RUNS"); do
    for job in "${JOBS[@]}"; do
        say "run $i/$RUNS: $job ..."
        p0=$("$PROBE")
        run_job "$job"
        p1=$("$PROBE")
        probe=$(awk -v a="$p0" -v b="$p1" 'BEGIN { print (a > b ? a : b) }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$job" "$(job_tool "$job")" "${job#*:}" \
            "$i" "$STATUS" "${WALL:-0}" "${RSS:-0}" "${CPU:-0}" "$COUNTED" "$probe" >>"$RESULTS"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

version() { "$@" 2>&1 | head -n 1 || true; }
{
    # shellcheck disable=SC2016 # the backquotes are Markdown
    printf 'command\t`%s`\n' "$CMDLINE"
    printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'machine\t%s cores, %s\n' "$(nproc)" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    printf 'load average (1/5/15 min)\t%s at the start, %s at the end\n' "$LOAD_START" "$LOAD_END"
    printf 'events\t%s per input (%s); text %s MB, JSON %s MB\n' "$LINES" "$(cat "$TOTALS")" \
        "$(($(stat -c %s "$TEXT") / 1000000))" "$(($(stat -c %s "$JSON") / 1000000))"
    printf 'addresses\t%s (bench/gen_logs.py --addresses %s)\n' "$ADDRESSES" "$ADDRESSES"
    printf 'runs\t%s per tool and input, alternating\n' "$RUNS"
    if [ -n "$THREADS" ]; then how="set by --threads"; else how="tokenwatch's default"; fi
    printf 'tokenwatch threads\t%s (%s)\n' "$TW_THREADS" "$how"
    printf 'GeoLite2-sized database\t%s\n' "$BIG_DESC"
    printf 'tokenwatch\t%s (source %s)\n' "$(version "$TW" --version)" \
        "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    [ "$HAVE_MTAIL" = 0 ] || printf 'mtail\t%s\n' "$(version mtail --version)"
    [ "$HAVE_F2B" = 0 ] || printf 'fail2ban-regex\t%s\n' "$(version fail2ban-regex --version)"
} >"$WORK/meta"

python3 "$HERE/report.py" "$RESULTS" "$TOTALS" "$WORK/meta" "$HERE/results.md" ||
    die "report.py failed"
say "table written to $HERE/results.md"
