#!/usr/bin/env python3
"""evaluate.py — ground-truth evaluation of tokenwatch's detection.

Generates the seeded scenario (gen_scenarios.py), replays it through
`$TW_BIN replay`, maps the anomaly events back to the labels and prints a
Markdown table: recall per attack kind, normal tokens flagged per behaviour
class, real travellers flagged by geo_velocity — and the same table for two
simpler published impossible-travel rules computed here on the same data:

  CrowdSec-style  more than 1000 km between two consecutive logins within 3 h
  Okta-style      more than 805 km/h between two consecutive logins, no
                  accuracy radius

Exit status: 0 when every threshold of issue 3 ("Ground-truth evaluation")
holds, 1 when one is missed, 2 when the evaluation could not run.

Thresholds (binding):
  recall 100 % for impossible_travel, failure_burst, rate_spike, ip_spraying
  recall >= 90 % for off_hours
  <= 1 % of normal tokens flagged at all (any rule, outside attack windows),
     counted per token and per identity (a rotating principal is one identity)
  0 real travellers flagged by geo_velocity

Environment: TW_BIN (tokenwatch binary), TW_SOURCE_DIR (source tree; default
two levels above this file). See README.md beside this file.

    python3 evaluate.py                     generate, replay, evaluate
    python3 evaluate.py --events FILE       evaluate an events file (no replay)
    python3 evaluate.py --self-test         check the matching logic itself
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime

sys.dont_write_bytecode = True   # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_scenarios as gen  # noqa: E402

# An attack counts as detected when its rule kind fires for its token (or,
# for spraying, its IP) from DETECT_BEFORE_S before its first line to
# DETECT_AFTER_S after its last. Event times have second precision.
DETECT_BEFORE_S = 2.0
DETECT_AFTER_S = 300.0
# A flag of an attacked token from EXCUSE_BEFORE_S before the attack to the
# label's excuse_until_ts (its next legitimate use, at least an hour after)
# belongs to the attack, not to normal behaviour.
EXCUSE_BEFORE_S = 60.0

RECALL_ORDER = ["impossible_travel", "off_hours", "rate_spike", "failure_burst", "ip_spraying"]
RECALL_MIN = {"impossible_travel": 1.0, "failure_burst": 1.0, "rate_spike": 1.0,
              "ip_spraying": 1.0, "off_hours": 0.9}
FP_MAX_SHARE = 0.01
CLASS_ORDER = ["office", "service", "service_multiregion", "traveller", "vpn", "mobile",
               "rotating", "quiet"]

BASELINES = [
    ("crowdsec", "CrowdSec-style (>1000 km in 3 h)"),
    ("okta", "Okta-style (>805 km/h, no radius)"),
]


def hint_key(h):
    """A masked hint as (first 3, last 4): robust to how the middle is
    written ("…" or "...")."""
    if not isinstance(h, str) or len(h) < 7:
        return None
    return (h[:3], h[-4:])


def parse_time(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------
# Labels

class Labels:
    def __init__(self, path=None, records=None):
        if records is None:
            with open(path, encoding="utf-8") as f:
                records = [json.loads(line) for line in f if line.strip()]
        self.meta = {}
        self.tokens = {}        # raw token -> record
        self.by_hint = {}       # hint key -> record
        self.attacks = []
        self.flights = []
        for r in records:
            t = r["type"]
            if t == "meta":
                self.meta = r
            elif t == "token":
                self.tokens[r["token"]] = r
                k = hint_key(r.get("hint") or gen.hint(r["token"]))
                if k in self.by_hint:
                    raise SystemExit("evaluate: labels: hint %r is not unique" % (k,))
                self.by_hint[k] = r
            elif t == "attack":
                self.attacks.append(r)
            elif t == "flight":
                self.flights.append(r)
        # attack windows per token, for excusing flags
        self.excuse = defaultdict(list)       # token -> [(from, to, attack id)]
        self.spray = []                       # (ip, from, to, attack id)
        for a in self.attacks:
            lo, hi = a["start_ts"] - EXCUSE_BEFORE_S, a["excuse_until_ts"]
            if a.get("token"):
                self.excuse[a["token"]].append((lo, hi, a["id"]))
            for tok in a.get("tokens_hit", []) or []:
                self.excuse[tok].append((lo, hi, a["id"]))
            if a["kind"] == "ip_spraying":
                self.spray.append((a["ip"], lo, hi, a["id"]))

    def normal(self, rec):
        return rec is not None and rec["class"] != "attack_only"

    @staticmethod
    def identity(rec):
        """Rotating tokens of one principal are one identity."""
        return ("principal", rec["principal"]) if rec["class"] == "rotating" else ("token", rec["token"])


# --------------------------------------------------------------------------
# Matching events to labels

def parse_events(lines):
    events, bad = [], 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            e = json.loads(line)
            e["_t"] = parse_time(e["time"])
            e["_key"] = hint_key(e.get("token_hint"))
            e.setdefault("kind", "")
            events.append(e)
        except (ValueError, KeyError, TypeError):
            bad += 1
    return events, bad


def event_scope(e):
    ev = e.get("evidence")
    scope = ev.get("scope") if isinstance(ev, dict) else None
    if scope in ("token", "ip"):
        return scope
    rid = str(e.get("rule", ""))
    return "ip" if ("ip" in rid.split("_") or "spray" in rid) else "token"


def matches(attack, e):
    """Does event e detect attack (right kind, right token or IP, in time)?"""
    if e["kind"] != attack["rule_kind"]:
        return False
    if not (attack["start_ts"] - DETECT_BEFORE_S <= e["_t"] <= attack["end_ts"] + DETECT_AFTER_S):
        return False
    if attack["kind"] == "ip_spraying":
        return event_scope(e) == "ip" and e.get("ip") == attack["ip"]
    if attack["kind"] == "failure_burst" and event_scope(e) != "token":
        return False
    return e["_key"] == hint_key(attack["hint"])


def excused(labels, rec, e):
    """Is event e on token rec part of an attack (not a false positive)?"""
    t = e["_t"]
    if rec is not None:
        for lo, hi, _aid in labels.excuse.get(rec["token"], ()):
            if lo <= t <= hi:
                return True
    if e.get("ip") is not None:
        for ip, lo, hi, _aid in labels.spray:
            if e["ip"] == ip and lo <= t <= hi:
                return True
    return False


def evaluate(labels, events, recall_kinds=None):
    """Recall per attack kind and false positives per normal class.
    recall_kinds limits recall to those attack kinds (baselines)."""
    by_key = defaultdict(list)
    for e in events:
        by_key[e["_key"]].append(e)
    ip_events = defaultdict(list)
    for e in events:
        if e.get("ip") is not None:
            ip_events[e["ip"]].append(e)

    res = {"attacks": [], "recall": {}, "fp_events": [], "unknown_events": 0,
           "attack_only_unexcused": 0}
    for a in labels.attacks:
        if recall_kinds is not None and a["kind"] not in recall_kinds:
            continue
        cands = ip_events.get(a["ip"], []) if a["kind"] == "ip_spraying" else \
            by_key.get(hint_key(a["hint"]), [])
        hit = [e for e in cands if matches(a, e)]
        res["attacks"].append({"id": a["id"], "kind": a["kind"], "detected": bool(hit),
                               "first": hit[0] if hit else None, "label": a})
    for kind in RECALL_ORDER:
        rows = [x for x in res["attacks"] if x["kind"] == kind]
        if rows:
            res["recall"][kind] = (sum(1 for x in rows if x["detected"]), len(rows))

    flagged = defaultdict(list)               # token -> unexcused events
    for e in events:
        rec = labels.by_hint.get(e["_key"])
        if rec is None:
            if not excused(labels, None, e):
                res["unknown_events"] += 1
            continue
        if excused(labels, rec, e):
            continue
        if not labels.normal(rec):
            res["attack_only_unexcused"] += 1
            continue
        flagged[rec["token"]].append(e)
        res["fp_events"].append((rec, e))

    classes = defaultdict(lambda: {"tokens": 0, "ids": set(), "flag_tokens": 0, "flag_ids": set(),
                                   "by_kind": Counter()})
    for tok, rec in labels.tokens.items():
        if not labels.normal(rec):
            continue
        c = classes[rec["class"]]
        c["tokens"] += 1
        c["ids"].add(Labels.identity(rec))
        if tok in flagged:
            c["flag_tokens"] += 1
            c["flag_ids"].add(Labels.identity(rec))
            for k in {e["kind"] for e in flagged[tok]}:
                c["by_kind"][k] += 1
    res["classes"] = classes
    tot = {"tokens": sum(c["tokens"] for c in classes.values()),
           "ids": sum(len(c["ids"]) for c in classes.values()),
           "flag_tokens": sum(c["flag_tokens"] for c in classes.values()),
           "flag_ids": sum(len(c["flag_ids"]) for c in classes.values())}
    res["total"] = tot
    trav = classes.get("traveller")
    res["travellers"] = trav["tokens"] if trav else 0
    res["travellers_geo_velocity"] = sorted(
        {rec["token"] for rec, e in res["fp_events"]
         if rec["class"] == "traveller" and e["kind"] == "geo_velocity"})
    res["fp_by_rule"] = Counter((e.get("rule") or e["kind"], rec["class"]) for rec, e in res["fp_events"])
    return res


def check_thresholds(res):
    failures = []
    for kind, need in RECALL_MIN.items():
        got, n = res["recall"].get(kind, (0, 0))
        if n == 0:
            failures.append("%s: no attacks in the scenario" % kind)
        elif got / n < need - 1e-9:
            failures.append("%s recall %d/%d = %.0f%% < %.0f%%" % (kind, got, n, 100.0 * got / n, 100 * need))
    tot = res["total"]
    for what, f, n in (("tokens", tot["flag_tokens"], tot["tokens"]),
                       ("identities", tot["flag_ids"], tot["ids"])):
        if n and f / n > FP_MAX_SHARE + 1e-12:
            failures.append("normal %s flagged %d/%d = %.2f%% > %.0f%%"
                            % (what, f, n, 100.0 * f / n, 100 * FP_MAX_SHARE))
    if res["travellers_geo_velocity"]:
        failures.append("%d real travellers flagged by geo_velocity" % len(res["travellers_geo_velocity"]))
    return failures


# --------------------------------------------------------------------------
# The published rules, on the same data

def read_checks(log_path):
    """Successful checks per token, in log order: token -> [(t, ip)]."""
    out = defaultdict(list)
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            parts = line.split(" ")
            if not parts[-1].startswith("result=ok"):
                continue
            ip = tok = None
            for p in parts[1:]:
                if p.startswith("ip="):
                    ip = p[3:]
                elif p.startswith("token="):
                    tok = p[6:]
            out[tok].append((parse_time(parts[0]), ip))
    return out


def baseline_events(checks, geo, allow_nets, rule):
    """Pseudo anomaly events (kind geo_velocity) of a published rule:
    consecutive located logins of a token (same-IP pairs and allowlisted
    addresses skipped, as tokenwatch's allowlist would), locations from
    cities.csv without accuracy radius."""
    import ipaddress
    allowed = {}

    def is_allowed(ip):
        r = allowed.get(ip)
        if r is None:
            a = ipaddress.ip_address(ip)
            r = allowed[ip] = any(a.version == n.version and a in n for n in allow_nets)
        return r

    events = []
    for tok, seq in checks.items():
        prev = None
        for t, ip in seq:
            if is_allowed(ip):
                continue
            n = geo.lookup(ip)
            if n is None or not n.located:
                continue
            if prev is not None and prev[1] != ip:
                km = gen.haversine_km(prev[2].lat, prev[2].lon, n.lat, n.lon)
                dt_h = max(t - prev[0], 1.0) / 3600.0
                if rule == "crowdsec":
                    bad = km > 1000.0 and dt_h <= 3.0
                else:
                    bad = km / dt_h > 805.0
                if bad:
                    events.append({"time": gen.iso(t), "_t": t, "_key": hint_key(gen.hint(tok)),
                                   "kind": "geo_velocity", "rule": rule, "ip": ip,
                                   "evidence": {"km": round(km, 1), "hours": round(dt_h, 3)}})
            prev = (t, ip, n)
    return events


# --------------------------------------------------------------------------
# Report

KIND_TITLE = {"impossible_travel": "impossible travel", "off_hours": "off-hours use",
              "rate_spike": "rate spike", "failure_burst": "failure burst",
              "ip_spraying": "IP spraying"}


def pct(a, b):
    return "%d/%d (%.0f%%)" % (a, b, 100.0 * a / b) if b else "–"


def pct1(a, b):
    return "%d/%d (%.1f%%)" % (a, b, 100.0 * a / b) if b else "–"


def markdown(labels, tw, bases, out):
    w = out.write
    w("### Recall per attack kind\n\n")
    w("| attack | rule kind | tokenwatch | %s |\n" % " | ".join(t for t, _ in bases))
    w("|---|---|---:|" + "---:|" * len(bases) + "\n")
    for kind in RECALL_ORDER:
        if kind not in tw["recall"]:
            continue
        rk = gen.ATTACK_RULE_KIND[kind] + (" (ip)" if kind == "ip_spraying" else "")
        cells = []
        for _, r in bases:
            cells.append(pct(*r["recall"][kind]) if kind in r["recall"] else "–")
        w("| %s | %s | %s | %s |\n" % (KIND_TITLE[kind], rk, pct(*tw["recall"][kind]), " | ".join(cells)))
    w("\n### Normal tokens flagged at all, outside attack windows\n\n")
    w("| behaviour class | tokens | identities | tokenwatch | %s |\n" % " | ".join(t for t, _ in bases))
    w("|---|---:|---:|---:|" + "---:|" * len(bases) + "\n")
    classes = [c for c in CLASS_ORDER if c in tw["classes"]] + \
        sorted(c for c in tw["classes"] if c not in CLASS_ORDER)
    for c in classes:
        cl = tw["classes"][c]
        cells = [pct1(r["classes"][c]["flag_tokens"], cl["tokens"]) for _, r in bases]
        ids = len(cl["ids"])
        w("| %s | %d | %d | %s | %s |\n" % (c, cl["tokens"], ids, pct1(cl["flag_tokens"], cl["tokens"]),
                                             " | ".join(cells)))
    t = tw["total"]
    w("| **all normal tokens** | %d | | %s | %s |\n" % (
        t["tokens"], pct1(t["flag_tokens"], t["tokens"]),
        " | ".join(pct1(r["total"]["flag_tokens"], t["tokens"]) for _, r in bases)))
    w("| **all normal identities** | | %d | %s | %s |\n" % (
        t["ids"], pct1(t["flag_ids"], t["ids"]),
        " | ".join(pct1(r["total"]["flag_ids"], t["ids"]) for _, r in bases)))
    w("\n| real travellers flagged by geo_velocity | tokenwatch | %s |\n" % " | ".join(t for t, _ in bases))
    w("|---|---:|" + "---:|" * len(bases) + "\n")
    w("| %d travellers, %d flights | %d | %s |\n" % (
        tw["travellers"], len(labels.flights), len(tw["travellers_geo_velocity"]),
        " | ".join(str(len(r["travellers_geo_velocity"])) for _, r in bases)))


def details(labels, tw, events, out, limit=40):
    w = out.write
    missed = [x for x in tw["attacks"] if not x["detected"]]
    if missed:
        w("\nMissed attacks:\n")
        by_key = defaultdict(list)
        for e in events:
            by_key[e["_key"]].append(e)
        for x in missed:
            a = x["label"]
            w("  %s %s %s %s %s..%s ip=%s %s\n" % (a["id"], a["kind"], a["target_class"] or "-",
                                                   a["hint"] or "-", a["start"], a["end"][11:], a["ip"],
                                                   json.dumps(a["detail"], ensure_ascii=False, sort_keys=True)))
            pool = by_key.get(hint_key(a["hint"]), []) if a["hint"] else \
                [e for e in events if e.get("ip") == a["ip"]]
            near = [e for e in pool if a["start_ts"] - 86400 <= e["_t"] <= a["excuse_until_ts"] + 3600]
            for e in near[:5]:
                w("      event %s %s/%s ip=%s\n" % (e["time"], e.get("rule"), e["kind"], e.get("ip")))
    if tw["fp_events"]:
        w("\nFalse positives (first event per token; %d events on %d tokens):\n"
          % (len(tw["fp_events"]), len({r["token"] for r, _ in tw["fp_events"]})))
        seen = set()
        n = 0
        for rec, e in tw["fp_events"]:
            if (rec["token"], e["kind"]) in seen:
                continue
            seen.add((rec["token"], e["kind"]))
            n += 1
            if n > limit:
                w("  ...\n")
                break
            sub = "/" + rec["sub"] if rec.get("sub") else ""
            w("  %s%s %s home=%s %s %s ip=%s %s evidence=%s\n" % (
                rec["class"], sub, rec["hint"], rec.get("home"), e["time"], e.get("rule"), e.get("ip"),
                e.get("city", e.get("country", "")), json.dumps(e.get("evidence"), ensure_ascii=False,
                                                               sort_keys=True)))
    if tw["fp_by_rule"]:
        w("\nFalse positives by rule and class (events): %s\n" % ", ".join(
            "%s/%s=%d" % (r, c, n) for (r, c), n in sorted(tw["fp_by_rule"].items())))
    if tw["unknown_events"] or tw["attack_only_unexcused"]:
        w("\nEvents of unknown tokens: %d; of attack-only tokens outside attack windows: %d\n"
          % (tw["unknown_events"], tw["attack_only_unexcused"]))


# --------------------------------------------------------------------------
# Running tokenwatch

REPLAY_RE = re.compile(r"replay: lines=(\d+) checks=(\d+) rejected=(\d+) ignored=(\d+) "
                       r"parse_errors=(\d+) skipped=(\d+)")


def scenario_rules(src_rules, vpn_cidrs, out_path):
    """The shipped rules plus the scenario's VPN egress CIDRs in the allowlist."""
    with open(src_rules, encoding="utf-8") as f:
        rules = json.load(f)
    allow = rules.setdefault("allowlist", {})
    cidrs = allow.setdefault("cidrs", [])
    for c in vpn_cidrs:
        if c not in cidrs:
            cidrs.append(c)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(rules, f, indent=2)
        f.write("\n")


def run_replay(tw_bin, src, work, log_path, labels, rules_file, asn):
    state = os.path.join(work, "state")
    os.makedirs(state, exist_ok=True)
    rules = os.path.join(work, "rules.json")
    scenario_rules(rules_file, labels.meta["vpn_cidrs"], rules)
    geoip = {"city_db": os.path.join(src, "testdata", "geoip", "GeoLite2-City-Test.mmdb")}
    if asn:
        geoip["asn_db"] = os.path.join(src, "testdata", "geoip", "GeoLite2-ASN-Test.mmdb")
    cfg = {"state_dir": state, "formats_dir": os.path.join(src, "rules", "formats"),
           "rules_file": rules, "geoip": geoip}
    cfg_path = os.path.join(work, "tokenwatch.json")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    cmd = [tw_bin, "replay", "-c", cfg_path, "--format", "generic-text", log_path]
    t = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
    secs = time.time() - t
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s" % (" ".join(cmd), p.returncode, err[-3000:]))
    m = REPLAY_RE.search(err)
    if not m:
        raise RuntimeError("replay printed no summary line:\n" + err[-3000:])
    lines, parse_errors = int(m.group(1)), int(m.group(5))
    if parse_errors or lines != labels.meta["lines"]:
        raise RuntimeError("replay read %d lines with %d parse errors; the scenario has %d lines"
                           % (lines, parse_errors, labels.meta["lines"]))
    return p.stdout.decode("utf-8"), secs, m.group(0)


# --------------------------------------------------------------------------
# Self-test of the matching (no binary needed)

def self_test():
    T = gen.ATTACK_T0
    tok = lambda p, s: p + "x" * 20 + s   # noqa: E731
    A, B, C, D, E, F = (tok("at-", "aaaa"), tok("at-", "bbbb"), tok("svc", "cccc"),
                        tok("at-", "dddd"), tok("ci-", "eeee"), tok("ci-", "ffff"))
    FAKE = tok("at-", "zzzz")
    recs = [{"type": "meta", "vpn_cidrs": gen.VPN_CIDRS, "lines": 0}]
    for t, cls, pr in ((A, "office", "u1"), (B, "traveller", "u2"), (C, "service", "s1"),
                       (D, "office", "u3"), (E, "rotating", "ci"), (F, "rotating", "ci")):
        recs.append({"type": "token", "token": t, "hint": gen.hint(t), "class": cls,
                     "principal": pr, "sub": None})
    recs.append({"type": "token", "token": FAKE, "hint": gen.hint(FAKE), "class": "attack_only",
                 "principal": None})

    def atk(aid, kind, token, start, end, ip, excuse=None, hits=()):
        return {"type": "attack", "id": aid, "kind": kind, "rule_kind": gen.ATTACK_RULE_KIND[kind],
                "token": token, "hint": gen.hint(token) if token else None, "ip": ip,
                "start": gen.iso(start), "end": gen.iso(end), "start_ts": start, "end_ts": end,
                "excuse_until_ts": excuse or end + 3600, "detail": {}, "target_class": "x",
                "tokens_hit": list(hits)}
    recs += [atk("A1", "impossible_travel", A, T + 100.5, T + 200, "1.1.1.1", excuse=T + 9000),
             atk("A2", "off_hours", D, T + 1000, T + 1100, "2.2.2.2"),
             atk("A3", "ip_spraying", None, T + 5000, T + 6000, "9.9.9.9", hits=[D]),
             atk("A4", "failure_burst", C, T + 7000, T + 7100, "3.3.3.3"),
             atk("A5", "rate_spike", C, T + 20000, T + 20300, "3.3.3.3")]
    labels = Labels(records=recs)

    def ev(t, token, kind, ip="8.8.8.8", scope=None, hint=None):
        e = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t))),
             "token_id": "tw_0", "token_hint": hint or gen.hint(token), "rule": kind,
             "kind": kind, "ip": ip, "evidence": {"scope": scope} if scope else {}}
        return json.dumps(e, ensure_ascii=False)
    lines = [
        ev(T + 100.9, A, "geo_velocity"),            # A1 detected: second precision rounds down
        ev(T + 8000, A, "geo_velocity"),             # excused: the way back, before excuse_until
        ev(T + 1050, D, "rate"),                     # wrong kind: A2 missed; excused though
        ev(T + 5500, FAKE, "failures", ip="9.9.9.9", scope="ip"),   # A3 detected
        ev(T + 5600, D, "geo_velocity", ip="9.9.9.9"),              # a spray hit: excused
        ev(T + 7050, C, "failures", ip="3.3.3.3", scope="ip"),      # wrong scope for A4
        ev(T + 20100, C, "rate", hint=C[:3] + "..." + C[-4:]),      # A5 detected, other ellipsis
        ev(T + 30000, B, "geo_velocity"),            # traveller FP, geo_velocity
        ev(T + 40000, A, "off_hours"),               # office FP (after the excuse window)
        ev(T + 40000, E, "rate"),                    # rotating FP
        ev(T + 40000, F, "rate"),                    # rotating FP, same identity
        ev(T + 50000, FAKE, "failures"),             # attack-only outside windows
        ev(T + 50000, tok("at-", "qqqq"), "rate"),   # unknown token
        "not json",
    ]
    events, bad = parse_events(lines)
    r = evaluate(labels, events)
    got = {x["id"]: x["detected"] for x in r["attacks"]}
    want = {"A1": True, "A2": False, "A3": True, "A4": False, "A5": True}
    problems = []
    if got != want:
        problems.append("detections %s != %s" % (got, want))
    if bad != 1:
        problems.append("bad lines %d != 1" % bad)
    fl = {c: (v["flag_tokens"], len(v["flag_ids"])) for c, v in r["classes"].items()}
    want_fl = {"office": (1, 1), "traveller": (1, 1), "service": (0, 0), "rotating": (2, 1)}
    if fl != want_fl:
        problems.append("flagged per class %s != %s" % (fl, want_fl))
    if r["travellers_geo_velocity"] != [B]:
        problems.append("travellers %s" % r["travellers_geo_velocity"])
    if r["unknown_events"] != 1 or r["attack_only_unexcused"] != 1:
        problems.append("unknown %d attack-only %d" % (r["unknown_events"], r["attack_only_unexcused"]))
    if r["total"] != {"tokens": 6, "ids": 5, "flag_tokens": 4, "flag_ids": 3}:
        problems.append("total %s" % r["total"])
    fails = check_thresholds(r)
    if not any(f.startswith("off_hours recall 0/1") for f in fails) or \
            not any("travellers flagged" in f for f in fails):
        problems.append("thresholds %s" % fails)

    # the published rules on a tiny log: a 1200 km flight in 2.5 h (CrowdSec
    # flags it, Okta does not), 460 km in 7 min (Okta flags, CrowdSec does
    # not), a VPN egress between (allowlisted, skipped)
    geo = gen.Geo(gen.DEFAULT_CSV)
    import ipaddress
    allow = [ipaddress.ip_network(c) for c in gen.VPN_CIDRS]
    checks = {
        B: [(T, "192.0.2.130"), (T + 100, "198.51.100.170"), (T + 2.5 * 3600, "89.64.0.9")],  # London -> Warsaw
        A: [(T, "192.0.2.140"), (T + 420, "87.32.0.5")],                                      # London -> Dublin
        C: [(T, "192.0.2.70"), (T + 60, "192.0.2.71")],                                       # same city
    }
    cs = baseline_events(checks, geo, allow, "crowdsec")
    ok = baseline_events(checks, geo, allow, "okta")
    if [e["_key"] for e in cs] != [hint_key(gen.hint(B))]:
        problems.append("crowdsec flags %s" % [e["_key"] for e in cs])
    if [e["_key"] for e in ok] != [hint_key(gen.hint(A))]:
        problems.append("okta flags %s" % [e["_key"] for e in ok])
    if problems:
        print("self-test FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("self-test OK: matching, excusal windows, identities, thresholds, published rules")
    return 0


# --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="Ground-truth evaluation of tokenwatch detection.")
    ap.add_argument("--bin", default=os.environ.get("TW_BIN"), help="tokenwatch binary ($TW_BIN)")
    ap.add_argument("--source-dir", default=os.environ.get("TW_SOURCE_DIR")
                    or os.path.normpath(os.path.join(HERE, "..", "..")))
    ap.add_argument("--scenario-dir", help="use (or, with --generate, write) the scenario here "
                    "instead of a temporary directory")
    ap.add_argument("--generate", action="store_true", help="with --scenario-dir: regenerate it")
    ap.add_argument("--seed", type=int, default=gen.DEFAULT_SEED)
    ap.add_argument("--rules", help="rules file to evaluate (default SOURCE/rules/default.json); "
                    "the scenario's VPN CIDRs are added to its allowlist")
    ap.add_argument("--no-asn", action="store_true", help="do not configure the ASN database")
    ap.add_argument("--events", help="evaluate this events file instead of running replay")
    ap.add_argument("--save-events", help="also write replay's events here")
    ap.add_argument("--json", help="write the results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--self-test", action="store_true", help="test the matching logic and exit")
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test()

    t_start = time.time()
    src = a.source_dir
    work = tempfile.mkdtemp(prefix="tw-scenario-")
    try:
        sdir = a.scenario_dir or os.path.join(work, "scenario")
        log_path = os.path.join(sdir, "scenario.log")
        lab_path = os.path.join(sdir, "labels.jsonl")
        if not a.scenario_dir or a.generate or not os.path.exists(log_path):
            sc = gen.Scenario(a.seed, gen.DEFAULT_CSV)
            sc.build()
            sc.write(sdir)
        t_gen = time.time() - t_start
        labels = Labels(lab_path)
        replay_info = ""
        if a.events:
            with open(a.events, encoding="utf-8") as f:
                out = f.read()
        else:
            if not a.bin or not os.access(a.bin, os.X_OK):
                print("evaluate: set TW_BIN (or --bin) to the tokenwatch binary", file=sys.stderr)
                return 2
            rules_file = a.rules or os.path.join(src, "rules", "default.json")
            try:
                out, secs, replay_info = run_replay(a.bin, src, work, log_path, labels, rules_file,
                                                    not a.no_asn)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                print("evaluate: %s" % exc, file=sys.stderr)
                return 2
            replay_info += " (%.1f s wall)" % secs
            if a.save_events:
                with open(a.save_events, "w", encoding="utf-8") as f:
                    f.write(out)
        events, bad = parse_events(out.splitlines())
        if bad:
            print("evaluate: %d event lines are not JSON anomaly events" % bad, file=sys.stderr)
            return 2
        tw = evaluate(labels, events)

        checks = read_checks(log_path)
        geo = gen.Geo(gen.DEFAULT_CSV)
        import ipaddress
        allow = [ipaddress.ip_network(c) for c in labels.meta["vpn_cidrs"]]
        bases = []
        for key, title in BASELINES:
            bev = baseline_events(checks, geo, allow, key)
            bases.append((title, evaluate(labels, bev, recall_kinds={"impossible_travel"})))

        print("## tokenwatch scenario evaluation (seed %s, %s .. %s, %d lines, %d events)\n"
              % (labels.meta.get("seed"), labels.meta.get("start"), labels.meta.get("end"),
                 labels.meta.get("lines", 0), len(events)))
        markdown(labels, tw, bases, sys.stdout)
        details(labels, tw, events, sys.stdout)
        kinds = Counter((e.get("rule"), e["kind"]) for e in events)
        print("\nEvents by rule: %s" % ", ".join("%s(%s)=%d" % (r, k, n) for (r, k), n in sorted(kinds.items())))
        if replay_info:
            print(replay_info)
        failures = check_thresholds(tw)
        print("\nevaluation: %.1f s (scenario %.1f s)" % (time.time() - t_start, t_gen))
        if a.json:
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump({"recall": tw["recall"], "total": tw["total"],
                           "classes": {c: {"tokens": v["tokens"], "identities": len(v["ids"]),
                                           "flagged_tokens": v["flag_tokens"],
                                           "flagged_identities": len(v["flag_ids"]),
                                           "by_kind": dict(v["by_kind"])}
                                       for c, v in tw["classes"].items()},
                           "travellers_geo_velocity": len(tw["travellers_geo_velocity"]),
                           "missed": [x["id"] for x in tw["attacks"] if not x["detected"]],
                           "baselines": {t: {"recall": r["recall"], "total": r["total"],
                                             "travellers_geo_velocity": len(r["travellers_geo_velocity"])}
                                         for t, r in bases},
                           "failures": failures}, f, indent=2, sort_keys=True)
        if failures:
            print("\nFAIL: " + "; ".join(failures))
            return 1
        print("\nPASS: every threshold holds")
        return 0
    finally:
        if a.keep:
            print("kept %s" % work, file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
