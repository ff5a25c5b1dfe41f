#!/usr/bin/env python3
"""standin.py — a stand-in for tokenwatch's HTTP side, for working on the
analyst page without the daemon (python3 stdlib only; a dev aid, not a test).

Serves exporter/page/ at "/" and "/static/<name>" with the headers the daemon
sends (Content-Security-Policy default-src 'self', nosniff, no-store,
X-Frame-Options DENY), and the analyst API of docs/api.md
(/work/briefs/api_contract.md) from canned data: flagged tokens and token
details are built from an anomaly events file (one JSON object per line, as
`tokenwatch replay` prints them), the rest (hour profile, rate baseline,
principal) is made up deterministically from the token id. Actions change the
state in memory, answer 409 when they do not apply, and are appended to an
events file as analyst_action lines when --audit is given.

    # events from the scenario (see testdata/scenarios/README.md)
    python3 testdata/scenarios/gen_scenarios.py --out /tmp/scen
    build/tokenwatch replay -c CONFIG /tmp/scen/scenario.log > /tmp/scen/events.jsonl
    python3 tests/browser/standin.py --events /tmp/scen/events.jsonl --port 8088 [--bearer S3CRET]

Then open http://127.0.0.1:8088/. Without --events a handful of built-in
anomalies is served. The page files are read on every request, so an edit
shows on the next reload.
"""
import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "exporter", "page"))

SEVERITIES = ["low", "medium", "high", "critical"]
STATES = ["observed", "flagged", "freezing", "frozen", "unfreezing", "unfrozen", "acked",
          "confirmed", "dismissed"]
ID_RE = re.compile(r"^tw_[0-9a-f]{16}$")
CTYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

BUILTIN_EVENTS = [
    {"time": "2026-11-16T12:23:40Z", "token_id": "tw_59de3fd635418474", "token_hint": "at-…bdxn",
     "rule": "impossible_travel", "kind": "geo_velocity", "severity": "critical", "action": "freeze",
     "ip": "87.32.15.242", "country": "IE", "city": "Dublin", "input": "gateway",
     "evidence": {"from": {"ip": "192.0.2.137", "country": "GB", "city": "London", "lat": 51.5085,
                           "lon": -0.1257, "radius_km": 20, "time": "2026-11-16T12:18:03Z"},
                  "to": {"ip": "87.32.15.242", "country": "IE", "city": "Dublin", "lat": 53.3331,
                         "lon": -6.2489, "radius_km": 20, "time": "2026-11-16T12:23:40Z"},
                  "km": 461.9, "hours": 0.094, "kmh": 4510.5, "max_kmh": 900.0}},
    {"time": "2026-11-16T12:23:40Z", "token_id": "tw_59de3fd635418474", "token_hint": "at-…bdxn",
     "rule": "new_country", "kind": "geo_new", "severity": "low", "action": "flag", "ip": "87.32.15.242",
     "country": "IE", "city": "Dublin", "input": "gateway",
     "evidence": {"country": "IE", "known": ["GB"]}},
    {"time": "2026-11-16T03:10:57Z", "token_id": "tw_3caaa44621a93e47", "token_hint": "svc…yaut",
     "rule": "rate_spike", "kind": "rate", "severity": "high", "action": "flag", "ip": "192.0.2.79",
     "country": "DE", "city": "Frankfurt am Main", "input": "gateway",
     "evidence": {"window_s": 300, "count": 310, "baseline_mean": 2.39, "baseline_sd": 1.1, "threshold": 30.0}},
    {"time": "2026-11-20T19:12:11Z", "token_id": "tw_fe61795f8c93fe6d", "token_hint": "at-…alrt",
     "rule": "off_hours", "kind": "off_hours", "severity": "medium", "action": "flag", "ip": "121.128.8.216",
     "country": "KR", "city": "Seoul", "input": "gateway",
     "evidence": {"hour_of_week": 124, "local_time": "Sat 04:12", "time_zone": "Asia/Seoul", "share": 0.0,
                  "policy": False, "note_from_log": "<img src=x onerror=alert(1)>"}},
    {"time": "2026-11-17T04:33:03Z", "token_id": "tw_1e9d2cedc587770a", "token_hint": "at-…osz9",
     "rule": "failure_burst", "kind": "failures", "severity": "medium", "action": "flag", "ip": "110.32.10.90",
     "country": "AU", "city": "Melbourne", "input": "gateway",
     "evidence": {"scope": "token", "window_s": 300, "rejected": 20, "checks": 20, "ratio": 1.0}},
]


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s):
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def seed_of(token_id):
    return int.from_bytes(hashlib.sha256(token_id.encode()).digest()[:8], "big")


class Store:
    """The canned daemon state: tokens built from anomaly events."""

    def __init__(self, events, audit_path=None):
        self.lock = threading.Lock()
        self.audit_path = audit_path
        self.started = time.time()
        self.tokens = {}
        for e in events:
            tid = e.get("token_id")
            if not isinstance(tid, str) or not ID_RE.match(tid):
                continue
            t = self.tokens.get(tid)
            if t is None:
                t = self.tokens[tid] = {"token_id": tid, "token_hint": e.get("token_hint", ""),
                                        "anomalies": [], "history": [], "state": "flagged",
                                        "frozen": False, "freezes": 0}
            t["anomalies"].append(e)
            if e.get("action") == "freeze" and not t["frozen"]:
                t["frozen"] = True
                t["state"] = "frozen"
                t["freezes"] += 1
                t["history"].append({"time": e["time"], "action": "freeze", "state": "frozen",
                                     "analyst": "tokenwatch", "note": "rule %s" % e.get("rule")})
            elif not t["history"]:
                t["history"].append({"time": e["time"], "action": "flag", "state": "flagged",
                                     "analyst": "tokenwatch", "note": "rule %s" % e.get("rule")})
        for t in self.tokens.values():
            t["anomalies"].sort(key=lambda a: a.get("time", ""), reverse=True)
            t["history"].sort(key=lambda h: h["time"], reverse=True)
            s = seed_of(t["token_id"])
            t["principal"] = None if s % 5 == 0 else "user%03d" % (s % 400)

    def item(self, t):
        a = t["anomalies"]
        latest = a[0] if a else {}
        sev = max((x.get("severity") for x in a if x.get("severity") in SEVERITIES),
                  key=SEVERITIES.index, default="low")
        rules = []
        for x in reversed(a):
            if x.get("rule") not in rules:
                rules.append(x.get("rule"))
        return {"token_id": t["token_id"], "token_hint": t["token_hint"], "principal": t["principal"],
                "state": t["state"], "frozen": t["frozen"], "severity": sev, "rule": latest.get("rule"),
                "rules": rules, "first_flagged": a[-1].get("time") if a else None,
                "last_anomaly": latest.get("time"), "anomalies": len(a), "ip": latest.get("ip", ""),
                "country": latest.get("country", ""), "city": latest.get("city", ""),
                "input": latest.get("input", ""), "freeze_until": None}

    def flagged(self, q):
        with self.lock:
            items = [self.item(t) for t in self.tokens.values()]
        if q["severity"] is not None:
            items = [i for i in items if SEVERITIES.index(i["severity"]) >= q["severity"]]
        if q["state"]:
            items = [i for i in items if i["state"] == q["state"]]
        if q["rule"]:
            items = [i for i in items if q["rule"] in i["rules"]]
        if q["since"] is not None:
            items = [i for i in items if (parse_rfc3339(i["last_anomaly"] or "") or 0) >= q["since"]]
        items.sort(key=lambda i: (i["last_anomaly"] or "", i["token_id"]), reverse=True)
        page = items[q["offset"]:q["offset"] + q["limit"]]
        return {"total": len(items), "offset": q["offset"], "limit": q["limit"], "items": page}

    def token(self, tid):
        with self.lock:
            t = self.tokens.get(tid)
            if t is None:
                return None
            s = seed_of(tid)
            # An office-like week: weekdays from ~8 to ~18, a little else.
            hours = []
            for d in range(7):
                for h in range(24):
                    x = (s >> ((d * 24 + h) % 60)) & 7
                    if d < 5 and 8 <= h < 18:
                        hours.append(20 + x * 6 + (10 if 10 <= h < 16 else 0))
                    elif d < 5 and h in (7, 18, 19):
                        hours.append(x)
                    else:
                        hours.append(1 if x == 7 else 0)
            countries, asns = [], []
            for a in t["anomalies"]:
                ev = a.get("evidence") or {}
                for c in [a.get("country")] + list(ev.get("known", []) or []) + list(ev.get("known_countries", []) or []):
                    if c and c not in countries:
                        countries.append(c)
                if isinstance(ev.get("asn"), int) and ev["asn"] not in asns:
                    asns.append(ev["asn"])
            tz = ""
            for a in t["anomalies"]:
                tz = (a.get("evidence") or {}).get("time_zone") or tz
            latest = t["anomalies"][0] if t["anomalies"] else {}
            body = self.item(t)
            body.update({
                "tracked": True, "learning": s % 7 == 0,
                "first_seen": "2026-11-02T08:01:12Z", "last_seen": latest.get("time"),
                "events": 200 + s % 5000,
                "rate": {"window_s": 300, "mean": round(2 + (s % 90) / 10, 2), "sd": round(0.5 + (s % 30) / 10, 2),
                         "current": s % 9, "baseline_windows": 4000 + s % 1000},
                "countries": countries, "asns": asns or [64500 + s % 20],
                "last_location": {"ip": latest.get("ip", ""), "country": latest.get("country", ""),
                                  "city": latest.get("city", ""), "lat": 0, "lon": 0, "radius_km": 20,
                                  "time": latest.get("time")} if latest else None,
                "time_zone": tz or "Europe/Berlin",
                "hours": hours,
                "anomalies": t["anomalies"][:20],
                "history": list(t["history"]),
                "freezes": t["freezes"],
            })
            return body

    def action(self, tid, action, analyst, note):
        with self.lock:
            t = self.tokens.get(tid)
            if t is None:
                return 404, {"error": "token %s is neither tracked nor flagged" % tid}
            st = t["state"]
            if action == "ack" and st not in ("flagged", "freezing", "frozen", "unfreezing", "unfrozen"):
                return 409, {"error": "ack does not apply to a token in state %s" % st}
            if action == "unfreeze" and not t["frozen"]:
                return 409, {"error": "the token is not frozen"}
            if action == "confirm" and st in ("confirmed", "observed"):
                return 409, {"error": "confirm does not apply to a token in state %s" % st}
            if action == "dismiss" and st in ("dismissed", "observed"):
                return 409, {"error": "dismiss does not apply to a token in state %s" % st}
            new = {"ack": "acked", "unfreeze": "unfrozen", "confirm": "confirmed", "dismiss": "dismissed"}[action]
            if action in ("unfreeze", "dismiss"):
                t["frozen"] = False
            t["state"] = new
            rec = {"time": now_rfc3339(), "action": action, "state": new, "analyst": analyst, "note": note}
            t["history"].insert(0, rec)
            if self.audit_path:
                line = dict(rec, type="analyst_action", token_id=tid, token_hint=t["token_hint"])
                with open(self.audit_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
            return 200, self.item(t)

    def stats(self):
        with self.lock:
            items = [self.item(t) for t in self.tokens.values()]
        by_state, by_sev = {}, {}
        for i in items:
            by_state[i["state"]] = by_state.get(i["state"], 0) + 1
            by_sev[i["severity"]] = by_sev.get(i["severity"], 0) + 1
        return {"version": "0.1.0-standin", "uptime_s": int(time.time() - self.started),
                "tokens_tracked": 1012 + len(items), "tokens_flagged": len(items),
                "tokens_frozen": sum(1 for i in items if i["frozen"]),
                "flagged_by_state": by_state, "flagged_by_severity": by_sev,
                "anomalies_total": sum(i["anomalies"] for i in items),
                "freeze_circuit_open": False, "freeze_queue_depth": 0, "detection": True,
                "inputs": [{"name": "gateway", "checks": 286430, "rejected": 5131, "lines": 286430,
                            "parse_errors": 0}]}


class Handler(BaseHTTPRequestHandler):
    server_version = "tokenwatch-standin"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("standin: " + (fmt % args) + "\n")

    def send(self, status, body, ctype="application/json; charset=utf-8", extra=None):
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def authorized(self):
        want = self.server.bearer
        if not want:
            return True
        return self.headers.get("Authorization", "") == "Bearer " + want

    def deny(self):
        self.send(401, {"error": "authentication required"},
                  extra={"WWW-Authenticate": 'Bearer realm="tokenwatch"'})

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        path = url.path
        if path == "/" or path.startswith("/static/"):
            name = "index.html" if path == "/" else path[len("/static/"):]
            full = os.path.join(self.server.page_dir, name)
            if "/" in name or name.startswith(".") or not os.path.isfile(full) or name == "index.html" and path != "/":
                return self.send(404, {"error": "not found"})
            ext = os.path.splitext(name)[1]
            with open(full, "rb") as f:
                data = f.read()
            return self.send(200, data, CTYPES.get(ext, "application/octet-stream"), PAGE_HEADERS)
        if not path.startswith("/api/"):
            return self.send(404, {"error": "not found"})
        if not self.authorized():
            return self.deny()
        store = self.server.store
        if path == "/api/v1/stats":
            return self.send(200, store.stats())
        if path == "/api/v1/flagged":
            q, err = parse_query(parse_qs(url.query, keep_blank_values=True))
            if err:
                return self.send(400, {"error": err})
            return self.send(200, store.flagged(q))
        m = re.match(r"^/api/v1/tokens/([^/]+)$", path)
        if m:
            if not ID_RE.match(m.group(1)):
                return self.send(400, {"error": "bad token id (expected tw_ and 16 hex digits)"})
            body = store.token(m.group(1))
            if body is None:
                return self.send(404, {"error": "token %s is neither tracked nor flagged" % m.group(1)})
            return self.send(200, body)
        return self.send(404, {"error": "not found"})

    def do_POST(self):
        url = urlsplit(self.path)
        m = re.match(r"^/api/v1/tokens/([^/]+)/(ack|unfreeze|confirm|dismiss)$", url.path)
        n = int(self.headers.get("Content-Length") or 0)
        if n > 8192:
            self.close_connection = True
            return self.send(413, {"error": "request body larger than 8 KiB"})
        raw = self.rfile.read(n) if n else b""
        if not m:
            return self.send(404 if not url.path.startswith("/api/v1/") else 405, {"error": "not found"})
        if not self.authorized():
            return self.deny()
        if not ID_RE.match(m.group(1)):
            return self.send(400, {"error": "bad token id (expected tw_ and 16 hex digits)"})
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self.send(415, {"error": "Content-Type must be application/json"})
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return self.send(400, {"error": "the body is not valid JSON"})
        analyst = body.get("analyst") if isinstance(body, dict) else None
        note = body.get("note", "") if isinstance(body, dict) else ""
        if not isinstance(analyst, str) or not 1 <= len(analyst) <= 64:
            return self.send(400, {"error": "analyst: expected 1 to 64 characters"})
        if not isinstance(note, str) or len(note) > 1000:
            return self.send(400, {"error": "note: expected at most 1000 characters"})
        status, out = self.server.store.action(m.group(1), m.group(2), analyst, note)
        return self.send(status, out)


def parse_query(qs):
    def one(k):
        v = qs.get(k)
        return v[-1] if v else None
    q = {"severity": None, "state": None, "rule": None, "since": None, "limit": 50, "offset": 0}
    sev = one("severity")
    if sev:
        if sev not in SEVERITIES:
            return None, "severity: expected one of low, medium, high, critical"
        q["severity"] = SEVERITIES.index(sev)
    st = one("state")
    if st:
        if st not in STATES:
            return None, "state: expected one of " + ", ".join(STATES)
        q["state"] = st
    q["rule"] = one("rule") or None
    since = one("since")
    if since:
        q["since"] = parse_rfc3339(since)
        if q["since"] is None:
            return None, "since: expected an RFC 3339 time"
    for k, lo, hi in (("limit", 1, 500), ("offset", 0, 10 ** 9)):
        v = one(k)
        if v is not None:
            if not v.isdigit() or not lo <= int(v) <= hi:
                return None, "%s: expected an integer %d..%d" % (k, lo, hi)
            q[k] = int(v)
    return q, None


def make_server(port=0, events=None, bearer=None, page_dir=PAGE_DIR, audit=None, verbose=False):
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.store = Store(events if events is not None else BUILTIN_EVENTS, audit)
    srv.bearer = bearer
    srv.page_dir = page_dir
    srv.verbose = verbose
    return srv


def read_events(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict) and e.get("token_id") and e.get("type") in (None, "anomaly"):
                    out.append(e)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8088)
    ap.add_argument("--events", help="anomaly events (JSON lines); default: a few built-in ones")
    ap.add_argument("--bearer", help="require this bearer token on /api")
    ap.add_argument("--audit", help="append analyst_action lines to this file")
    ap.add_argument("--page-dir", default=PAGE_DIR)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    srv = make_server(a.port, read_events(a.events) if a.events else None, a.bearer, a.page_dir, a.audit, a.verbose)
    print("standin: http://127.0.0.1:%d/ (%d tokens)" % (srv.server_address[1], len(srv.store.tokens)), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
