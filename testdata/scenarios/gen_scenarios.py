#!/usr/bin/env python3
"""gen_scenarios.py — seeded ground-truth scenario for tokenwatch's detection.

Writes three weeks (2026-11-02 .. 2026-11-22, UTC; no DST change anywhere in
that span) of generic-text auth lines for several hundred tokens with distinct
behaviour classes, and injects labelled attacks in the last week:

    OUT/scenario.log    generic-text lines, sorted by time (RFC 3339, ms)
    OUT/labels.jsonl    ground truth, one JSON object per line:
                        {"type":"meta", ...}    seed, period, VPN CIDRs, counts
                        {"type":"token", ...}   every token and its class
                        {"type":"attack", ...}  every attack: kind, token or ip,
                                                start/end, evidence of the truth

All tokens are fake, test-only values. Their masked hints (first 3 and last 4
characters, as tokenwatch shows them) are unique, so an anomaly event's
token_hint identifies the token.

Locations come from testdata/geoip/cities.csv (the networks of the test
GeoIP database), so distances, radii, ASNs and time zones are exactly what
tokenwatch sees. Standard library only; the same seed gives byte-identical
output. See README.md beside this file.

    python3 gen_scenarios.py --out DIR [--seed N] [--stats]
"""
import argparse
import csv
import ipaddress
import json
import math
import os
import random
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CSV = os.path.join(HERE, "..", "geoip", "cities.csv")

T0 = int(datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp())   # Monday
DAYS = 21
T1 = T0 + DAYS * 86400
ATTACK_T0 = T0 + 14 * 86400                                         # Monday 2026-11-16
DEFAULT_SEED = 20261102

# VPN egress networks (cities.csv kind "vpn"); the scenario's rules config
# allowlists exactly these.
VPN_CIDRS = ["198.51.100.160/27", "91.132.144.0/22", "2001:db8:700::/48"]

# Which rule kind must fire for each attack kind, and on what.
ATTACK_RULE_KIND = {
    "impossible_travel": "geo_velocity",
    "off_hours": "off_hours",
    "rate_spike": "rate",
    "failure_burst": "failures",
    "ip_spraying": "failures",
}

REJECT_WORDS = ["rejected", "denied", "failed", "401", "403"]
HUMAN_PATHS = ["/v1/orders", "/v1/users/me", "/v1/reports", "/v1/search", "/v1/invoices",
               "/v1/projects", "/v1/tickets"]
SERVICE_PATHS = ["/v1/sync", "/v1/events", "/v1/metrics", "/v1/inventory"]
CI_PATHS = ["/v1/deploy", "/v1/artifacts", "/v1/builds"]
PROBE_PATHS = ["/v1/admin/users", "/v1/admin/keys", "/v1/billing/export", "/v1/users",
               "/v1/secrets", "/v1/org/settings", "/v1/audit"]


# --------------------------------------------------------------------------
# Geography: cities.csv networks

def haversine_km(lat1, lon1, lat2, lon2):
    r = 6371.0088
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


class Net:
    __slots__ = ("net", "city", "cc", "lat", "lon", "radius", "tz", "asn", "kind", "key")

    def __init__(self, row):
        self.net = ipaddress.ip_network(row["network"])
        self.city = row["city"]
        self.cc = row["country_iso"]
        self.lat = float(row["lat"]) if row["lat"] else None
        self.lon = float(row["lon"]) if row["lon"] else None
        self.radius = float(row["radius_km"]) if row["radius_km"] else None
        self.tz = row["time_zone"] or None
        self.asn = int(row["asn"]) if row["asn"] else None
        self.kind = row["kind"]
        self.key = row["network"]

    @property
    def located(self):
        return self.lat is not None


class Geo:
    """The networks of cities.csv, with a longest-prefix lookup (they do not
    overlap, so the containing network is unique)."""

    def __init__(self, path):
        with open(path, newline="", encoding="utf-8") as f:
            self.nets = [Net(r) for r in csv.DictReader(f)]
        self._cache = {}
        self.by_city = defaultdict(list)
        for n in self.nets:
            if n.city:
                self.by_city[n.city].append(n)

    def lookup(self, ip):
        r = self._cache.get(ip)
        if r is None and ip not in self._cache:
            a = ipaddress.ip_address(ip)
            for n in self.nets:
                if a.version == n.net.version and a in n.net:
                    r = n
                    break
            self._cache[ip] = r
        return r

    def net(self, city, kind=None, family=None, cidr=None):
        for n in self.by_city.get(city, []) if city else self.nets:
            if cidr is not None and n.key != cidr:
                continue
            if kind is not None and n.kind != kind:
                continue
            if family is not None and n.net.version != family:
                continue
            return n
        raise KeyError((city, kind, family, cidr))

    def nets_of(self, city, kind=None):
        return [n for n in self.by_city.get(city, []) if kind is None or n.kind == kind]


def same_prefix(ip1, ip2):
    """Same /24 (IPv4) or /48 (IPv6): what tokenwatch treats as one network."""
    a, b = ipaddress.ip_address(ip1), ipaddress.ip_address(ip2)
    if a.version != b.version:
        return False
    bits = 24 if a.version == 4 else 48
    return (int(a) >> (a.max_prefixlen - bits)) == (int(b) >> (b.max_prefixlen - bits))


# --------------------------------------------------------------------------
# Helpers

def iso(t):
    """RFC 3339 UTC with milliseconds."""
    ms = int(round(t * 1000))
    s, ms = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % ms


def iso_s(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


_TZ_OFFSETS = {}


def tz_offset_h(tz):
    """UTC offset of tz in hours; constant over the scenario (checked)."""
    off = _TZ_OFFSETS.get(tz)
    if off is None:
        z = ZoneInfo(tz)
        o0 = datetime.fromtimestamp(T0, z).utcoffset()
        o1 = datetime.fromtimestamp(T1, z).utcoffset()
        if o0 != o1:
            raise SystemExit("gen_scenarios: %s changes UTC offset inside the scenario" % tz)
        off = _TZ_OFFSETS[tz] = o0.total_seconds() / 3600.0
    return off


def local_days(off_h):
    """(local midnight as UTC epoch, weekday 0=Mon) for every local date that
    overlaps [T0, T1)."""
    first = T0 - 86400
    out = []
    d = first
    while d < T1 + 86400:
        midnight = d - off_h * 3600
        if midnight + 86400 > T0 and midnight < T1:
            wd = datetime.fromtimestamp(d, timezone.utc).weekday()
            out.append((midnight, wd))
        d += 86400
    return out


class Tok:
    """One token: its class, principal, home and its lines."""
    __slots__ = ("token", "cls", "user", "home", "tz", "ev", "meta", "sub")

    def __init__(self, token, cls, user, home=None, tz=None, sub=None):
        self.token = token
        self.cls = cls
        self.user = user
        self.home = home
        self.tz = tz
        self.sub = sub
        self.ev = []     # (t, ip, result, path)
        self.meta = {}


def hint(token):
    return token[:3] + "\u2026" + token[-4:]


class Scenario:
    def __init__(self, seed, csv_path):
        self.seed = seed
        self.rng = random.Random(seed)
        self.geo = Geo(csv_path)
        self.tokens = []        # every Tok, in creation order
        self.attack_only = []   # Tok of fake tokens used only by attacks
        self.attacks = []       # label dicts
        self.extra = []         # (t, ip, user, token, path, result) lines of attacks
        self.flights = []       # traveller flight records
        self._last4 = set()
        self._hosts = defaultdict(set)
        self._user_n = Counter()
        self.vpn_nets = [ipaddress.ip_network(c) for c in VPN_CIDRS]

    # -- identities ------------------------------------------------------
    ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"

    def new_token(self, prefix, length=28):
        rng = self.rng
        while True:
            last4 = "".join(rng.choice(self.ALNUM) for _ in range(4))
            if last4 not in self._last4:
                self._last4.add(last4)
                break
        body = "".join(rng.choice(self.ALNUM) for _ in range(length - len(prefix) - 4))
        return prefix + body + last4

    def new_user(self, stem):
        self._user_n[stem] += 1
        return "%s%03d" % (stem, self._user_n[stem])

    def host(self, net, share=False):
        """A host address in net; distinct per call until the network runs out."""
        rng = self.rng
        used = self._hosts[net.key]
        n = net.net
        for _ in range(64):
            if n.version == 4:
                size = n.num_addresses
                off = rng.randrange(1, size - 1) if size > 2 else 0
            else:
                off = rng.getrandbits(min(64, n.max_prefixlen - n.prefixlen)) or 1
            a = str(n.network_address + off)
            if share or a not in used:
                used.add(a)
                return a
        return a

    # -- behaviour primitives ---------------------------------------------
    def sessions(self, t_start, t_end, sess_per_h, req_mean, first=True, gap_s=25.0):
        """Request times of a human: sessions as a Poisson process over
        [t_start, t_end) (one at t_start if first), each a geometric number
        of requests a few tens of seconds apart."""
        rng = self.rng
        out = []
        starts = [t_start] if first else []
        t = t_start
        while True:
            t += rng.expovariate(sess_per_h / 3600.0)
            if t >= t_end:
                break
            starts.append(t)
        p = 1.0 / max(1.0, req_mean)
        for s in starts:
            n = 1
            while rng.random() > p and n < 60:
                n += 1
            tt = s
            for _ in range(n):
                out.append(tt)
                tt += rng.expovariate(1.0 / gap_s)
        return out

    def workday(self, midnight, p, extra_evening=True):
        """One office day in local time (midnight = local midnight as UTC)."""
        rng = self.rng
        start = min(10.5, max(6.5, rng.gauss(p["start"], 0.35)))
        end = min(19.5, max(start + 6.0, rng.gauss(p["end"], 0.45)))
        times = []
        if rng.random() < 0.85:
            lunch = rng.uniform(11.75, 13.0)
            lunch_end = lunch + rng.uniform(0.5, 1.0)
            times += self.sessions(midnight + start * 3600, midnight + lunch * 3600,
                                   p["rate"], p["req"])
            times += self.sessions(midnight + lunch_end * 3600, midnight + end * 3600,
                                   p["rate"], p["req"])
        else:
            times += self.sessions(midnight + start * 3600, midnight + end * 3600,
                                   p["rate"], p["req"])
        if extra_evening and rng.random() < p.get("evening", 0.02):
            es = rng.uniform(19.5, 21.5)
            times += self.sessions(midnight + es * 3600, midnight + (es + rng.uniform(0.3, 1.0)) * 3600,
                                   p["rate"], p["req"])
        return times

    def office_params(self, heavy=False):
        rng = self.rng
        start = rng.uniform(7.5, 9.5)
        p = {"start": start, "end": start + rng.uniform(8.0, 9.5),
             "rate": rng.uniform(0.6, 1.8), "req": rng.uniform(1.5, 3.5),
             "evening": 0.02, "reject": 0.004}
        if heavy:
            p["rate"] = rng.uniform(3.0, 5.0)
            p["req"] = rng.uniform(5.0, 9.0)
        return p

    def emit(self, tok, times, ipfn, paths=HUMAN_PATHS, reject=0.004):
        rng = self.rng
        for t in times:
            if T0 <= t < T1:
                res = rng.choice(REJECT_WORDS[:3]) if rng.random() < reject else "ok"
                tok.ev.append((t, ipfn(t), res, rng.choice(paths)))

    # -- home networks ------------------------------------------------------
    def home_ips(self, city, prefer6=0.5, dual=0.4):
        """Home addresses of a person in city: one v4 or v6 address, or both
        (dual stack) where the city has both."""
        rng = self.rng
        res4 = [n for n in self.geo.nets_of(city, "residential") if n.net.version == 4]
        res6 = [n for n in self.geo.nets_of(city, "residential") if n.net.version == 6]
        if not res4 and not res6:
            res4 = [n for n in self.geo.nets_of(city) if n.net.version == 4]
        ips = []
        if res4 and res6:
            r = rng.random()
            if r < dual:
                ips = [self.host(rng.choice(res4)), self.host(rng.choice(res6))]
            elif r < dual + (1 - dual) * prefer6:
                ips = [self.host(rng.choice(res6))]
            else:
                ips = [self.host(rng.choice(res4))]
        elif res4:
            ips = [self.host(rng.choice(res4))]
        else:
            ips = [self.host(rng.choice(res6))]
        return ips

    # ======================================================================
    # Normal classes

    OFFICE_CITIES = [  # (city, weight)
        ("Berlin", 30), ("London", 30), ("Paris", 16), ("New York", 26), ("San Francisco", 18),
        ("Chicago", 10), ("Toronto", 10), ("São Paulo", 8), ("Tokyo", 14), ("Sydney", 10),
        ("Munich", 14), ("Stockholm", 8), ("Warsaw", 10), ("Dublin", 8), ("Los Angeles", 8),
        ("Seattle", 8), ("Vancouver", 5), ("Bengaluru", 8), ("Melbourne", 6), ("Seoul", 6),
        ("Hong Kong", 4), ("Auckland", 3), ("Johannesburg", 3), ("Buenos Aires", 3),
    ]

    def gen_office(self, n, n_heavy):
        rng = self.rng
        cities = [c for c, _ in self.OFFICE_CITIES]
        weights = [w for _, w in self.OFFICE_CITIES]
        # one shared office NAT address per city (the company's site)
        office_nat = {}
        for i in range(n):
            heavy = i < n_heavy
            city = rng.choices(cities, weights)[0]
            tz = self.geo.net(city).tz
            off = tz_offset_h(tz)
            user = self.new_user("user")
            tok = Tok(self.new_token("at-"), "office", user, city, tz, "heavy" if heavy else None)
            p = self.office_params(heavy)
            home = self.home_ips(city)
            goes_to_office = rng.random() < 0.6
            if goes_to_office and city not in office_nat:
                n4 = [x for x in self.geo.nets_of(city, "residential") if x.net.version == 4]
                office_nat[city] = self.host(n4[0] if n4 else self.geo.nets_of(city)[0])
            weekend_worker = rng.random() < 0.04
            tok.meta.update(params=p, home_ips=home, weekend_worker=weekend_worker,
                            office_ip=office_nat.get(city) if goes_to_office else None)
            if weekend_worker:
                tok.sub = (tok.sub + "+weekend") if tok.sub else "weekend"
            vacation = set()
            if rng.random() < 0.06:
                d0 = rng.randrange(0, DAYS - 3)
                vacation = set(range(d0, d0 + rng.randint(2, 4)))
            for di, (mid, wd) in enumerate(local_days(off)):
                if di in vacation:
                    continue
                if wd < 5:
                    times = self.workday(mid, p)
                    at_office = goes_to_office and rng.random() < 0.6
                    if at_office:
                        ip_day = office_nat[city]
                        ipfn = lambda t, ip=ip_day: ip
                    else:
                        ipfn = lambda t, hs=home: hs[0] if len(hs) == 1 else rng.choice(hs)
                    self.emit(tok, times, ipfn, reject=p["reject"])
                elif weekend_worker and wd == 5 and rng.random() < 0.75:
                    s = rng.uniform(9.5, 11.0)
                    times = self.sessions(mid + s * 3600, mid + (s + rng.uniform(1.0, 2.5)) * 3600,
                                          p["rate"], p["req"])
                    self.emit(tok, times, lambda t, hs=home: hs[0], reject=p["reject"])
            self.tokens.append(tok)

    def gen_quiet(self, n):
        rng = self.rng
        cities = [c for c, _ in self.OFFICE_CITIES]
        for i in range(n):
            city = rng.choice(cities)
            tz = self.geo.net(city).tz
            off = tz_offset_h(tz)
            tok = Tok(self.new_token("at-"), "quiet", self.new_user("user"), city, tz)
            home = self.home_ips(city, dual=0.0)
            tok.meta.update(home_ips=home)
            days = [(m, wd) for (m, wd) in local_days(off) if wd < 5]
            per_week = rng.randint(1, 5)
            times = []
            for w in range(4):
                wk = [d for d in days if T0 + (w - 1) * 7 * 86400 <= d[0] < T0 + w * 7 * 86400 + 86400]
                for (mid, wd) in rng.sample(wk, min(len(wk), per_week)):
                    s = mid + rng.uniform(9.0, 17.0) * 3600
                    times += self.sessions(s, s + 60, 0.1, 2.0)
            self.emit(tok, sorted(times), lambda t, hs=home: hs[0])
            self.tokens.append(tok)

    SERVICE_DCS = ["192.0.2.64/26", "2001:db8:600::/48", "198.51.100.192/27", "64.62.128.0/22",
                   "2001:db8:602::/48", "203.0.113.64/26", "2001:db8:601::/48"]
    SERVICE_NAMES = ["billing", "search", "reports", "mailer", "inventory", "backup", "metrics",
                     "ledger", "notify", "thumbs", "audit", "sync"]

    def gen_service(self, rates):
        """24/7 service tokens: a constant Poisson rate from a few addresses
        (a NAT pool) of one data-centre network (one ASN)."""
        rng = self.rng
        for i, rate in enumerate(rates):
            net = self.geo.net(None, cidr=self.SERVICE_DCS[i % len(self.SERVICE_DCS)])
            tok = Tok(self.new_token("svc"), "service", "svc-" + self.SERVICE_NAMES[i], net.city, net.tz)
            pool = [self.host(net) for _ in range(rng.randint(1, 4))]
            tok.meta.update(rate_per_min=rate, ips=pool, dc=net.key)
            t = T0 + rng.uniform(0, 60)
            times = []
            while t < T1:
                times.append(t)
                t += rng.expovariate(rate / 60.0)
            self.emit(tok, times, lambda t, p=pool: rng.choice(p), paths=SERVICE_PATHS, reject=0.001)
            self.tokens.append(tok)

    def gen_service_multiregion(self, n, rate):
        """A global service calling from three regions of one cloud provider
        (one ASN) with one token: far apart, but the same ASN."""
        rng = self.rng
        regions = [self.geo.net("Frankfurt am Main", "datacenter", 4),
                   self.geo.net("Ashburn", cidr="64.62.128.0/22"),
                   self.geo.net("Singapore", "datacenter", 4)]
        for i in range(n):
            tok = Tok(self.new_token("svc"), "service_multiregion", "svc-global%d" % i,
                      "Frankfurt am Main", regions[0].tz)
            pools = [[self.host(r) for _ in range(2)] for r in regions]
            tok.meta.update(rate_per_min=rate, ips=sum(pools, []))
            t = T0 + rng.uniform(0, 60)
            times = []
            while t < T1:
                times.append(t)
                t += rng.expovariate(rate / 60.0)
            self.emit(tok, times, lambda t: rng.choice(rng.choice(pools)), paths=SERVICE_PATHS,
                      reject=0.001)
            self.tokens.append(tok)

    def gen_rotating_service(self, principal, period_h, dc_net, day_rate, night_rate, tz):
        """A principal whose token rotates every period_h hours (a CI system
        issuing short-lived tokens): traffic all day, more in its local
        working hours."""
        rng = self.rng
        pool = [self.host(dc_net) for _ in range(3)]
        off = tz_offset_h(tz)
        t = T0
        k = 0
        while t < T1:
            tok = Tok(self.new_token("ci-"), "rotating", principal, dc_net.city, tz,
                      "every %dh" % period_h)
            tok.meta.update(issued=t, expires=t + period_h * 3600, ips=pool, seq=k)
            tt = t + rng.uniform(0, 30)
            times = []
            while tt < t + period_h * 3600:
                times.append(tt)
                lh = ((tt / 3600.0 + off) % 24)
                wd = datetime.fromtimestamp(tt + off * 3600, timezone.utc).weekday()
                rate = day_rate if (wd < 5 and 8 <= lh < 19) else night_rate
                tt += rng.expovariate(rate / 60.0)
            self.emit(tok, times, lambda x: rng.choice(pool), paths=CI_PATHS, reject=0.001)
            self.tokens.append(tok)
            t += period_h * 3600
            k += 1

    def gen_rotating_human(self, city):
        """A person whose SSO access token is re-issued every working day
        (valid 24 h): a new token each morning, same user= principal. A client
        that still holds yesterday's token gets one rejection first."""
        rng = self.rng
        net = self.geo.net(city)
        tz = net.tz
        off = tz_offset_h(tz)
        user = self.new_user("sso")
        home = self.home_ips(city, dual=0.0)
        p = self.office_params()
        prev = None
        for (mid, wd) in local_days(off):
            if wd >= 5:
                continue
            times = [t for t in sorted(self.workday(mid, p)) if T0 <= t < T1]
            if not times:
                continue
            tok = Tok(self.new_token("at-"), "rotating", user, city, tz, "daily")
            tok.meta.update(issued=times[0], expires=times[0] + 86400, home_ips=home, params=p)
            if prev is not None and rng.random() < 0.3 and times[0] > prev.meta["expires"]:
                prev.ev.append((times[0] - 2.0, home[0], "401", rng.choice(HUMAN_PATHS)))
            self.emit(tok, times, lambda t: home[0])
            self.tokens.append(tok)
            prev = tok

    def gen_vpn(self, n):
        """People alternating between home and their company VPN's egress
        (allowlisted in the scenario's rules): per session, some go through
        the VPN."""
        rng = self.rng
        homes = ["Munich", "Stockholm", "Warsaw", "Dublin", "Los Angeles", "Seattle", "Vancouver",
                 "Seoul", "Melbourne", "Berlin", "London", "New York", "Tokyo", "Paris",
                 "Hong Kong", "Bengaluru", "Toronto"]
        vpn_nets = [self.geo.net("Amsterdam", "vpn", 4), self.geo.net("Zurich", "vpn", 4),
                    self.geo.net("Amsterdam", "vpn", 6)]
        for i in range(n):
            city = homes[i % len(homes)]
            tz = self.geo.net(city).tz
            off = tz_offset_h(tz)
            tok = Tok(self.new_token("at-"), "vpn", self.new_user("user"), city, tz)
            p = self.office_params()
            home = self.home_ips(city, prefer6=0.7, dual=0.0)
            # not in the VPN's /24 (198.51.100.0/24 holds the Amsterdam egress)
            for _ in range(10):
                if not any(same_prefix(home[0], self.host(v, share=True)) for v in vpn_nets[:1]):
                    break
                home = self.home_ips(city, prefer6=1.0, dual=0.0)
            vnet = vpn_nets[i % 3]
            vpn_ips = [self.host(vnet, share=True) for _ in range(3)]
            share = rng.uniform(0.3, 0.7)
            tok.meta.update(home_ips=home, vpn_ips=vpn_ips, vpn_share=share, params=p)
            for (mid, wd) in local_days(off):
                if wd >= 5:
                    continue
                times = sorted(self.workday(mid, p))
                # a session keeps its route: switch at gaps longer than 10 min
                route = rng.random() < share
                last = None
                for t in times:
                    if last is not None and t - last > 600:
                        route = rng.random() < share
                    last = t
                    ip = rng.choice(vpn_ips) if route else home[0]
                    if T0 <= t < T1:
                        res = "ok" if rng.random() >= 0.004 else "denied"
                        tok.ev.append((t, ip, res, rng.choice(HUMAN_PATHS)))
            self.tokens.append(tok)

    MOBILE_SETUPS = [
        # (home city, mobile network cidr) — the phone's carrier geolocates
        # to the country's centroid (radius 500/1000 km) or to another city
        ("Berlin", "37.120.64.0/20"), ("Munich", "37.120.64.0/20"), ("Berlin", "37.120.64.0/20"),
        ("Munich", "37.120.64.0/20"), ("Chicago", "96.44.0.0/16"), ("Denver", "96.44.0.0/16"),
        ("Chicago", "96.44.0.0/16"), ("New York", "96.44.0.0/16"), ("San Francisco", "96.44.0.0/16"),
        ("São Paulo", "177.32.0.0/16"), ("São Paulo", "177.32.0.0/16"),
        ("Bengaluru", "203.0.113.192/26"), ("Madrid", "198.51.100.224/28"),
        ("Istanbul", "88.230.0.0/20"), ("Mexico City", "187.16.0.0/20"), ("Lagos", "105.112.0.0/20"),
    ]

    def gen_mobile(self):
        """Office people who also work from their phone: the carrier's
        addresses locate only to the country (large accuracy radius) or to a
        nearby hub city of the same carrier."""
        rng = self.rng
        for i, (city, mcidr) in enumerate(self.MOBILE_SETUPS):
            tz = self.geo.net(city).tz
            off = tz_offset_h(tz)
            mnet = self.geo.net(None, cidr=mcidr)
            tok = Tok(self.new_token("at-"), "mobile", self.new_user("user"), city, tz)
            p = self.office_params()
            if city in ("Madrid", "Istanbul", "Mexico City", "Lagos"):
                home = [self.host(mnet)]          # the home line is the mobile carrier too
            else:
                home = self.home_ips(city, dual=0.0)
            share = rng.uniform(0.15, 0.4)
            tok.meta.update(home_ips=home, mobile_net=mcidr, mobile_share=share, params=p)
            for (mid, wd) in local_days(off):
                if wd >= 5:
                    continue
                times = sorted(self.workday(mid, p))
                on_phone = False
                last = None
                mip = self.host(mnet, share=True)
                for t in times:
                    if last is not None and t - last > 600:
                        on_phone = rng.random() < share
                        if on_phone:
                            mip = self.host(mnet, share=True)    # carrier NAT: new address
                    last = t
                    ip = mip if on_phone else home[0]
                    if T0 <= t < T1:
                        res = "ok" if rng.random() >= 0.004 else "denied"
                        tok.ev.append((t, ip, res, rng.choice(HUMAN_PATHS)))
            self.tokens.append(tok)

    # -- travellers --------------------------------------------------------
    TRAVEL_CIRCUITS = [
        # (home, [destinations]); domestic circuits stay in one country
        ("New York", ["San Francisco", "Chicago"]), ("San Francisco", ["New York", "Seattle"]),
        ("Chicago", ["Los Angeles", "New York"]), ("Seattle", ["Chicago", "Los Angeles"]),
        ("Sydney", ["Melbourne"]), ("Melbourne", ["Sydney"]), ("Toronto", ["Vancouver"]),
        ("Berlin", ["Munich"]), ("Los Angeles", ["New York", "Denver"]),
        ("Munich", ["Berlin"]), ("Vancouver", ["Toronto"]), ("Denver", ["Seattle", "Chicago"]),
        # international
        ("London", ["New York", "Paris"]), ("Berlin", ["London", "Stockholm"]),
        ("Paris", ["London", "Warsaw"]), ("New York", ["London"]),
        ("San Francisco", ["Tokyo", "London"]), ("Tokyo", ["San Francisco", "Seoul"]),
        ("Sydney", ["Hong Kong", "Tokyo"]), ("London", ["Dubai", "Bengaluru"]),
        ("Stockholm", ["Berlin", "London"]), ("Warsaw", ["Berlin", "Paris"]),
        ("Dublin", ["London", "New York"]), ("Seoul", ["Tokyo", "Hong Kong"]),
        ("Hong Kong", ["Tokyo", "Sydney"]), ("São Paulo", ["Buenos Aires", "New York"]),
        ("Toronto", ["London", "New York"]), ("Munich", ["London", "New York"]),
    ]
    NEW_COUNTRY_TRIPS = [("Berlin", "Madrid"), ("Chicago", "Mexico City")]

    def flight_hours(self, c1, c2):
        """Gate-to-gate (block) time of a direct flight: taxi, climb and
        descent (~0.5 h) plus cruise at a ground speed that grows with stage
        length (650 km/h short hops .. 850 km/h long haul), +8 % / -6 % for
        the jet stream on long east/westbound northern legs, +-3 % noise."""
        n1, n2 = self.geo.net(c1), self.geo.net(c2)
        km = haversine_km(n1.lat, n1.lon, n2.lat, n2.lon)
        v = 650.0 + 200.0 * min(1.0, km / 3000.0)
        dlon = (n2.lon - n1.lon + 540) % 360 - 180
        dlat = n2.lat - n1.lat
        east_west = abs(dlon) * math.cos(math.radians((n1.lat + n2.lat) / 2)) > abs(dlat)
        if km > 2500 and east_west and (n1.lat + n2.lat) > 0:
            v *= 1.08 if dlon > 0 else 0.94       # northern jet stream
        v *= self.rng.uniform(0.97, 1.03)
        return km, 0.5 + km / v

    def gen_travellers(self, n_new_country=2):
        rng = self.rng
        plans = list(self.TRAVEL_CIRCUITS)
        for i, (home, dests) in enumerate(plans + [(h, None) for h, _ in self.NEW_COUNTRY_TRIPS]):
            new_country = dests is None
            if new_country:
                h, d = self.NEW_COUNTRY_TRIPS[i - len(plans)]
                dests = [c for hh, cs in self.TRAVEL_CIRCUITS if hh == h for c in cs][:1]
                new_dest = d
            tz = self.geo.net(home).tz
            tok = Tok(self.new_token("at-"), "traveller", self.new_user("user"), home, tz,
                      "new country" if new_country else
                      ("domestic" if all(self.geo.net(d).cc == self.geo.net(home).cc
                                         for d in dests) else "international"))
            p = self.office_params()
            home_ips = self.home_ips(home, dual=0.0)
            tok.meta.update(home_ips=home_ips, params=p, circuit=dests)
            # itinerary: week 1 visits every circuit city (one trip, two legs
            # if two cities); weeks 2 and 3 one trip each to a circuit city
            trips = []
            trips.append((0, list(dests)))
            trips.append((1, [rng.choice(dests)]))
            trips.append((2, [new_dest] if new_country else [rng.choice(dests)]))
            segs = self.itinerary(tok, home, trips)
            tok.meta["segments"] = [(c, iso_s(a), iso_s(b)) for c, a, b, _ in segs]
            tok.meta["segs"] = segs
            for city, a, b, ips in segs:
                net = self.geo.net(city)
                off = tz_offset_h(net.tz)
                times = []
                for (mid, wd) in local_days(off):
                    if wd < 5:
                        times += [t for t in self.workday(mid, p, extra_evening=False) if a <= t <= b]
                if a > T0:
                    times += [a, a + rng.uniform(20, 90)]          # first use after landing
                if b < T1:
                    times += [b - rng.uniform(20, 90), b]          # last use at the gate
                self.emit(tok, sorted(times), lambda t, ips=ips: ips[0], reject=0.004)
            tok.ev.sort()
            self.tokens.append(tok)

    def itinerary(self, tok, home, trips):
        """Location segments (city, first_use, last_use, ips) around the
        trips; flights pause the token's traffic. A leg departs on the local
        date of t_ref; the next leg stay_n local days after landing."""
        rng = self.rng
        segs = []
        cur_city, cur_from = home, T0
        home_ips = tok.meta["home_ips"]
        cur_ips = home_ips
        for week, legs in trips:
            route = legs + [home]
            day = rng.randint(0, 2) if len(legs) == 1 else 0       # Mon..Wed
            nights = [rng.randint(1, 3)] if len(legs) == 1 else [2, 2]
            t_ref = T0 + week * 7 * 86400 + day * 86400 + 43200
            for leg_i, dest in enumerate(route):
                src, dst = cur_city, dest
                km, block = self.flight_hours(src, dst)
                src_off = tz_offset_h(self.geo.net(src).tz)
                dst_off = tz_offset_h(self.geo.net(dst).tz)
                found = False
                for attempt in range(600):
                    if attempt and attempt % 200 == 0:
                        t_ref += 86400                    # no slot that day: next day
                    mid = t_ref - ((t_ref + src_off * 3600) % 86400)
                    dep = mid + rng.uniform(7.0, 21.5) * 3600
                    # last use: boarding .. 2 h before off-block; first use:
                    # phone back on at the arrival gate .. 1.5 h later
                    before = rng.uniform(0.2, 2.0)
                    after = rng.uniform(0.0, 1.5)
                    arr = dep + block * 3600
                    last_use, first_use = dep - before * 3600, arr + after * 3600
                    lu_local = (last_use / 3600 + src_off) % 24
                    fu_local = (first_use / 3600 + dst_off) % 24
                    if 6.5 <= lu_local <= 22.5 and 7.0 <= fu_local <= 22.5 \
                            and last_use > cur_from + 3 * 3600:
                        found = True
                        break
                if not found:
                    raise RuntimeError("no flight slot %s -> %s" % (src, dst))
                if first_use >= T1 - 3600:
                    break                                 # still away when the scenario ends
                segs.append((cur_city, cur_from, last_use, cur_ips))
                if dest == home:
                    new_ips = home_ips
                else:
                    nets = [x for x in self.geo.nets_of(dst) if x.kind == "residential"] \
                        or self.geo.nets_of(dst)
                    new_ips = [self.host(rng.choice(nets))]   # the hotel's network
                n1, n2 = self.geo.net(src), self.geo.net(dst)
                gap_h = (first_use - last_use) / 3600.0
                self.flights.append({
                    "token": tok.token, "from": src, "to": dst, "km": round(km, 1),
                    "block_h": round(block, 2), "gate_h": round(before, 2), "landed_h": round(after, 2),
                    "gap_h": round(gap_h, 2), "kmh": round(km / gap_h, 1),
                    "kmh_after_radii": round(max(0.0, km - n1.radius - n2.radius) / gap_h, 1),
                    "last_use": last_use, "first_use": first_use,
                    "ip_from": cur_ips[0], "ip_to": new_ips[0]})
                cur_city, cur_from, cur_ips = dest, first_use, new_ips
                t_ref = first_use + nights[min(leg_i, len(nights) - 1)] * 86400
        segs.append((cur_city, cur_from, T1, cur_ips))
        return segs

    # ======================================================================
    # Attacks (last week)

    def normal_tokens(self, cls=None, sub=None, pred=None):
        out = [t for t in self.tokens if (cls is None or t.cls == cls)
               and (sub is None or t.sub == sub) and not t.meta.get("attacked")
               and (pred is None or pred(t))]
        return out

    def label(self, kind, tok, start, end, ip, detail, token=None, extra_excuse=0.0):
        """Records an attack. The FP-excusal window runs to the token's next
        legitimate use after the attack (where a geo rule may fire on the way
        back) or an hour, whichever is later."""
        exc = end + 3600
        if tok is not None:
            tok.meta["attacked"] = True
            nxt = self.next_geo_use(tok, end)
            if nxt is not None:
                exc = max(exc, nxt + 1)
        exc = max(exc, end + extra_excuse)
        rec = {"type": "attack", "id": "A%02d" % (len(self.attacks) + 1), "kind": kind,
               "rule_kind": ATTACK_RULE_KIND[kind],
               "token": tok.token if tok is not None else token,
               "hint": hint(tok.token) if tok is not None else None,
               "target_class": tok.cls if tok is not None else None,
               "principal": tok.user if tok is not None else None,
               "ip": ip, "start": iso(start), "end": iso(end),
               "start_ts": round(start, 3), "end_ts": round(end, 3),
               "excuse_until_ts": round(exc, 3), "detail": detail}
        self.attacks.append(rec)
        return rec

    def next_geo_use(self, tok, after):
        """Time of the token's first legitimate accepted use after `after`
        from an address a geo rule looks at (not a VPN egress): where a flag
        on the way back from the attacker's location would fire."""
        vpn = self.vpn_nets
        for e in tok.ev:
            if e[0] > after and e[2] == "ok":
                a = ipaddress.ip_address(e[1])
                if not any(a.version == v.version and a in v for v in vpn):
                    return e[0]
        return None

    def attack_line(self, t, ip, tok_or_token, result, path, user=None):
        if isinstance(tok_or_token, Tok):
            self.extra.append((t, ip, tok_or_token.user, tok_or_token.token, path, result))
        else:
            self.extra.append((t, ip, user, tok_or_token, path, result))

    ATTACKER_CITIES = ["Moscow", "Lagos", "Beijing", "São Paulo", "Buenos Aires", "Johannesburg",
                       "Cairo", "Dubai", "Istanbul", "Nairobi", "Mexico City", "Mumbai", "Hong Kong",
                       "Seoul", "Auckland", "Tokyo", "Sydney", "New York", "Los Angeles", "London"]

    def attacker_ip(self, anchor_ip, cities, min_kmh, dt_h):
        """An address in a far city: not the anchor's /24 (/48) nor its ASN,
        and (km - radii) / dt above min_kmh."""
        rng = self.rng
        a = self.geo.lookup(anchor_ip)
        cands = []
        for c in cities:
            for n in self.geo.nets_of(c):
                if n.kind == "vpn" or not n.located or n.city == a.city:
                    continue
                if n.asn is not None and n.asn == a.asn:
                    continue
                km = haversine_km(a.lat, a.lon, n.lat, n.lon)
                if (km - a.radius - n.radius) / dt_h < min_kmh:
                    continue
                cands.append(n)
        rng.shuffle(cands)
        for n in cands:
            ip = self.host(n)
            if not same_prefix(ip, anchor_ip):
                return ip, n
        raise RuntimeError("no attacker city for %s" % anchor_ip)

    def paths_of(self, tok):
        if tok.cls.startswith("service"):
            return SERVICE_PATHS
        return CI_PATHS if tok.token.startswith("ci-") else HUMAN_PATHS

    def location_at(self, tok, t):
        """City a traveller is in (or flying from) at t."""
        for (c, a, b, _ips) in tok.meta.get("segs", []):
            if t <= b:
                return c if t >= a else None          # None: in the air
        return tok.home

    def anchor_event(self, tok, pred):
        evs = [e for e in tok.ev if ATTACK_T0 <= e[0] < T1 - 86400 and e[2] == "ok" and pred(e)]
        if not evs:
            return None
        return self.rng.choice(evs)

    def weekday_local(self, tok, t):
        off = tz_offset_h(tok.tz)
        lt = t + off * 3600
        return datetime.fromtimestamp(lt, timezone.utc).weekday(), (lt % 86400) / 3600.0

    def atk_impossible_travel(self, tok, cities=None, anchor_pred=None, dt_min=(3, 25),
                              attacker=None, note=None):
        rng = self.rng
        vpn = set(tok.meta.get("vpn_ips", []))
        home = set(tok.meta.get("home_ips", []) or tok.meta.get("ips", []))
        if tok.meta.get("office_ip"):
            home.add(tok.meta["office_ip"])

        def ok(e):
            wd, h = self.weekday_local(tok, e[0])
            if anchor_pred is not None:
                return anchor_pred(e)
            return e[1] not in vpn and (not home or e[1] in home) and wd < 5 and 9 <= h <= 16
        e = self.anchor_event(tok, ok)
        if e is None:
            raise RuntimeError("no anchor for %s" % tok.token)
        dt = rng.uniform(*dt_min) * 60.0
        if attacker is not None:
            net = self.geo.net(None, cidr=attacker)
            ip = self.host(net)
        else:
            ip, net = self.attacker_ip(e[1], cities or self.ATTACKER_CITIES, 2000.0, dt / 3600.0)
        a = self.geo.lookup(e[1])
        km = haversine_km(a.lat, a.lon, net.lat, net.lon)
        t = e[0] + dt
        n = rng.randint(2, 6)
        times = []
        for _ in range(n):
            times.append(t)
            t += rng.uniform(15, 120)
        for t in times:
            self.attack_line(t, ip, tok, "ok", rng.choice(self.paths_of(tok)))
        self.label("impossible_travel", tok, times[0], times[-1], ip, {
            "from_ip": e[1], "from_city": a.city or a.cc, "from_time": iso(e[0]),
            "to_city": net.city or net.cc, "km": round(km, 1),
            "km_after_radii": round(km - a.radius - net.radius, 1),
            "minutes": round(dt / 60.0, 1),
            "kmh_after_radii": round((km - a.radius - net.radius) / (dt / 3600.0)),
            "requests": n, "note": note})

    def atk_off_hours(self, tok, ip=None, token=None):
        """Use at 01:00-04:30 local on the attack week's Saturday or Sunday,
        from the token's usual address."""
        rng = self.rng
        off = tz_offset_h(tok.tz)
        day = rng.choice([5, 6])                              # Sat 21 / Sun 22 Nov
        local_mid = ATTACK_T0 + day * 86400 - off * 3600
        start = local_mid + rng.uniform(1.0, 4.5) * 3600
        if ip is None:
            ip = tok.meta["home_ips"][0]
        n = rng.randint(3, 12)
        dur = rng.uniform(2, 20) * 60
        times = sorted(start + rng.uniform(0, dur) for _ in range(n))
        times[0] = start
        target = token or tok
        for t in times:
            self.attack_line(t, ip, target, "ok", rng.choice(HUMAN_PATHS))
        wd, h = self.weekday_local(tok, start)
        self.label("off_hours", target, times[0], times[-1], ip, {
            "local_weekday": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][wd],
            "local_hour": round(h, 2), "time_zone": tok.tz, "requests": n})

    def base_rate_per_min(self, tok):
        """The token's own rate: requests per minute over its active time
        (services: all the time; people: their working spans) before the
        attack week."""
        evs = [e[0] for e in tok.ev if e[0] < ATTACK_T0]
        if tok.cls in ("service", "rotating") and "rate_per_min" in tok.meta:
            return tok.meta["rate_per_min"]
        by_day = defaultdict(list)
        for t in evs:
            by_day[int(t // 86400)].append(t)
        active = sum(max(v) - min(v) for v in by_day.values()) / 60.0
        return len(evs) / active if active > 0 else 0.0

    def atk_rate_spike(self, tok, base=None, when=None):
        rng = self.rng
        if base is None:
            base = self.base_rate_per_min(tok)
        factor = rng.uniform(50, 100)
        rate = base * factor
        dur = rng.uniform(3, 10) * 60
        if when is None:
            def ok(e):
                wd, h = self.weekday_local(tok, e[0])
                return tok.cls == "service" or (wd < 5 and 10 <= h <= 15)
            e = self.anchor_event(tok, ok)
            start, ip = e[0] + rng.uniform(5, 60), e[1]
        else:
            start, ip = when
        t = start
        times = []
        while t < start + dur:
            times.append(t)
            t += rng.expovariate(rate / 60.0)
        paths = self.paths_of(tok)
        for t in times:
            self.attack_line(t, ip, tok, "ok", rng.choice(paths))
        self.label("rate_spike", tok, times[0], times[-1], ip, {
            "base_per_min": round(base, 3), "factor": round(factor, 1),
            "spike_per_min": round(len(times) / (dur / 60.0), 1), "minutes": round(dur / 60.0, 1),
            "requests": len(times)})

    def atk_failure_burst(self, tok, foreign):
        rng = self.rng
        vpn = set(tok.meta.get("vpn_ips", []))

        def ok(e):
            wd, h = self.weekday_local(tok, e[0])
            return e[1] not in vpn and (tok.cls == "service" or (wd < 5 and 9 <= h <= 16))
        e = self.anchor_event(tok, ok)
        if e is None:
            e = self.anchor_event(tok, lambda e: e[1] not in vpn)
        if e is None:
            # quiet token: an attacker found it at some weekday noon
            wd_mid = ATTACK_T0 + 86400 * 2 - tz_offset_h(tok.tz) * 3600
            e = (wd_mid + 12 * 3600, tok.meta["home_ips"][0], "ok", "/")
        if foreign:
            ip, net = self.attacker_ip(e[1], self.ATTACKER_CITIES, 0.0, 1.0)
        else:
            ip = e[1]
        n = rng.randint(30, 150)                 # at least 6 a minute
        dur = rng.uniform(1, 5) * 60
        start = e[0] + rng.uniform(30, 1800)
        times = sorted(start + rng.uniform(0, dur) for _ in range(n))
        times[0] = start
        word = rng.choice(["401", "403", "denied", "rejected"])
        for t in times:
            self.attack_line(t, ip, tok, word, rng.choice(PROBE_PATHS))
        self.label("failure_burst", tok, times[0], times[-1], ip, {
            "rejected": n, "minutes": round(dur / 60.0, 1), "source": "foreign" if foreign else "usual",
            "result": word})

    def atk_spraying(self, ip, n_tokens, hits, dur_min):
        rng = self.rng
        start = ATTACK_T0 + rng.uniform(0.5, 6.0) * 86400
        dur = dur_min * 60
        fakes = []
        for _ in range(n_tokens):
            ft = Tok(self.new_token(rng.choice(["at-", "at-", "svc", "ci-"])), "attack_only", None)
            self.attack_only.append(ft)
            fakes.append(ft)
        attempts = []
        for ft in fakes:
            for _ in range(rng.choice([1, 1, 1, 2])):
                attempts.append((start + rng.uniform(0, dur), ft.token, None,
                                 rng.choice(["401", "401", "rejected", "403"])))
        for ht in hits:
            attempts.append((start + rng.uniform(0, dur), ht.token, ht.user, "ok"))
            ht.meta["attacked"] = True
        attempts.sort()
        for (t, token, user, res) in attempts:
            self.attack_line(t, ip, token, res, "/v1/users/me", user=user)
        t0, t1 = attempts[0][0], attempts[-1][0]
        rec = self.label("ip_spraying", None, t0, t1, ip, {
            "distinct_tokens": n_tokens + len(hits), "attempts": len(attempts),
            "rejected": sum(1 for a in attempts if a[3] != "ok"), "minutes": dur_min,
            "location": (lambda n: (n.city or n.cc) if n else "unknown")(self.geo.lookup(ip))},
            token=None)
        # real tokens that the spray got through with: excused around it
        rec["tokens_hit"] = [h.token for h in hits]
        rec["hints_hit"] = [hint(h.token) for h in hits]
        exc = rec["excuse_until_ts"]
        for h in hits:
            nxt = self.next_geo_use(h, t1)
            if nxt is not None:
                exc = max(exc, nxt + 1)
        rec["excuse_until_ts"] = round(exc, 3)

    def gen_attacks(self):
        """The labelled attacks, all in the last week; one attack per token."""
        rng = self.rng
        fresh = lambda lst: [t for t in lst if not t.meta.get("attacked")]   # noqa: E731

        office = self.normal_tokens("office", pred=lambda t: t.sub is None)
        rng.shuffle(office)

        def office_in(city, pred=lambda t: True):
            return fresh([t for t in office if t.home == city and pred(t)])[0]

        # -- impossible travel: 14 ------------------------------------------
        lon = office_in("London", lambda t: not t.meta["office_ip"] and all(
            self.geo.lookup(ip).radius <= 20 for ip in t.meta["home_ips"]))
        self.atk_impossible_travel(lon, cities=["Dublin"], dt_min=(4, 8), note="short hop, 460 km",
                                   anchor_pred=lambda e: self.geo.lookup(e[1]).radius <= 20
                                   and self.weekday_local(lon, e[0])[0] < 5
                                   and 9 <= self.weekday_local(lon, e[0])[1] <= 16)
        self.atk_impossible_travel(office_in("Berlin"), cities=["Moscow"], dt_min=(8, 15),
                                   note="1600 km in minutes")
        self.atk_impossible_travel(office_in("Berlin"), attacker="177.32.0.0/16", dt_min=(10, 25),
                                   note="to a country-level location (radius 1000 km)")
        for c in ["New York", "Paris", "Tokyo", "Sydney"]:
            self.atk_impossible_travel(office_in(c))
        intl = self.normal_tokens("traveller", sub="international")
        t = intl[0]
        self.atk_impossible_travel(t, note="traveller, at home", anchor_pred=lambda e, t=t:
                                   e[1] in t.meta["home_ips"] and self.location_at(t, e[0]) == t.home
                                   and self.weekday_local(t, e[0])[0] < 5)
        t = intl[1]
        home_ips = set(t.meta["home_ips"])
        self.atk_impossible_travel(t, note="traveller, abroad",
                                   anchor_pred=lambda e: e[1] not in home_ips)
        vpn = self.normal_tokens("vpn")
        self.atk_impossible_travel(vpn[0], note="VPN user, from home")
        self.atk_impossible_travel(vpn[1], note="VPN user, from home")
        svc = self.normal_tokens("service", pred=lambda t: t.meta["rate_per_min"] >= 0.2)
        self.atk_impossible_travel(svc[-1], anchor_pred=lambda e: True, note="service token")
        ci = [t for t in self.normal_tokens("rotating", sub="every 1h")
              if ATTACK_T0 + 86400 <= t.meta["issued"] < T1 - 86400]
        c = ci[len(ci) // 3]
        self.atk_impossible_travel(c, note="hourly CI token (new token, known principal)",
                                   anchor_pred=lambda e, c=c: e[0] < c.meta["issued"] + 1800)
        mob = self.normal_tokens("mobile", pred=lambda t: t.home == "Chicago")
        self.atk_impossible_travel(mob[0], cities=["Beijing", "Moscow", "Lagos"], note="mobile user")

        # -- off-hours: 20 ---------------------------------------------------
        for _ in range(15):
            self.atk_off_hours(fresh(office)[0])
        for person in sorted({t.user for t in self.tokens if t.sub == "daily"})[:2]:
            toks = [t for t in self.tokens if t.user == person]
            fri = [t for t in toks if t.meta["issued"] < ATTACK_T0 + 5 * 86400][-1]
            self.atk_off_hours(fri)
        self.atk_off_hours(fresh(vpn)[0])
        self.atk_off_hours(self.normal_tokens("mobile", pred=lambda t: t.home in ("Berlin", "Munich"))[0])
        # a traveller who spends the weekend at home
        wk = ATTACK_T0 + 5 * 86400
        trav = self.normal_tokens("traveller", pred=lambda t: all(
            self.location_at(t, x) == t.home for x in range(wk - 6 * 3600, T1, 3600)))
        self.atk_off_hours(trav[0])

        # -- rate spike: 10 --------------------------------------------------
        svc = sorted(self.normal_tokens("service", pred=lambda t: t.meta["rate_per_min"] >= 0.25),
                     key=lambda t: t.token)
        for s in svc[:5]:
            self.atk_rate_spike(s)
        heavy = [h for h in self.normal_tokens("office", sub="heavy") if self.base_rate_per_min(h) >= 0.3]
        for h in heavy[:4]:
            self.atk_rate_spike(h)
        ci = [t for t in self.normal_tokens("rotating", sub="every 1h")
              if ATTACK_T0 + 2 * 86400 <= t.meta["issued"] < T1 - 86400
              and 8 <= self.weekday_local(t, t.meta["issued"])[1] < 17
              and self.weekday_local(t, t.meta["issued"])[0] < 5]
        c = ci[len(ci) // 2]
        e = c.ev[len(c.ev) // 4]
        self.atk_rate_spike(c, base=self.ci_day_rate, when=(e[0] + 1, e[1]))

        # -- failure burst: 10 -----------------------------------------------
        targets = [fresh(office)[i] for i in range(4)]
        targets += self.normal_tokens("service")[:2]
        targets += self.normal_tokens("vpn")[:1]
        targets += self.normal_tokens("quiet")[:1]
        targets += self.normal_tokens("traveller")[:1]
        targets += [t for t in self.normal_tokens("rotating", sub="daily")
                    if ATTACK_T0 + 86400 <= t.meta["issued"] < ATTACK_T0 + 3 * 86400][:1]
        for i, t in enumerate(targets):
            self.atk_failure_burst(t, foreign=(i % 2 == 1))

        # -- IP spraying: 6 --------------------------------------------------
        # (ip, fake tokens, real tokens it gets through with, minutes)
        spray = [("95.165.3.77", 180, 1, 20), ("105.112.9.14", 60, 0, 8),
                 ("123.112.4.200", 250, 2, 30), ("2001:db8:900::66", 90, 1, 12),
                 ("176.97.41.9", 45, 0, 6), ("45.155.205.17", 120, 1, 15)]
        for ip, n, nh, dur in spray:
            hits = fresh(office)[:nh]
            self.atk_spraying(ip, n, hits, dur)

    # ======================================================================

    def build(self):
        g = self.geo
        self.gen_office(250, 10)
        self.gen_quiet(40)
        rates = [0.5, 0.5, 0.3, 0.3, 0.25, 0.25, 0.2, 0.1, 0.1, 0.05]
        self.gen_service(rates)
        self.gen_service_multiregion(3, 0.15)
        self.ci_day_rate = 0.6
        self.gen_rotating_service("ci-deployer", 1, g.net("Frankfurt am Main", "datacenter", 4),
                                  self.ci_day_rate, 0.15, "Europe/Berlin")
        self.gen_rotating_service("batch-exporter", 6, g.net("Ashburn", cidr="198.51.100.192/27"),
                                  0.2, 0.2, "America/New_York")
        for city in ["Berlin", "New York", "Tokyo"]:
            self.gen_rotating_human(city)
        self.gen_vpn(30)
        self.gen_mobile()
        self.gen_travellers()
        for t in self.tokens:
            t.ev.sort()
        self.gen_attacks()

    # -- output ------------------------------------------------------------
    def lines(self):
        rows = []
        seq = 0
        for tok in self.tokens:
            for (t, ip, res, path) in tok.ev:
                rows.append((t, seq, ip, tok.user, tok.token, path, res))
                seq += 1
        for (t, ip, user, token, path, res) in self.extra:
            if T0 <= t < T1:
                rows.append((t, seq, ip, user, token, path, res))
                seq += 1
        rows.sort()
        for (t, _s, ip, user, token, path, res) in rows:
            u = " user=" + user if user else ""
            yield "%s ip=%s%s token=%s path=%s result=%s\n" % (iso(t), ip, u, token, path, res)

    def write(self, out):
        os.makedirs(out, exist_ok=True)
        n = 0
        tmp = os.path.join(out, "scenario.log.tmp")
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            buf = []
            for line in self.lines():
                buf.append(line)
                n += 1
                if len(buf) >= 8192:
                    f.write("".join(buf))
                    buf.clear()
            f.write("".join(buf))
        os.replace(tmp, os.path.join(out, "scenario.log"))
        tmp = os.path.join(out, "labels.jsonl.tmp")
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            meta = {"type": "meta", "generator": "gen_scenarios.py", "seed": self.seed,
                    "start": iso_s(T0), "end": iso_s(T1), "attack_week_start": iso_s(ATTACK_T0),
                    "start_ts": T0, "end_ts": T1, "attack_week_start_ts": ATTACK_T0,
                    "vpn_cidrs": VPN_CIDRS, "lines": n, "attack_rule_kind": ATTACK_RULE_KIND}
            f.write(json.dumps(meta, ensure_ascii=False, sort_keys=True) + "\n")
            for tok in self.tokens:
                rec = {"type": "token", "token": tok.token, "hint": hint(tok.token), "class": tok.cls,
                       "sub": tok.sub, "principal": tok.user, "home": tok.home, "time_zone": tok.tz,
                       "lines": len(tok.ev), "attacked": bool(tok.meta.get("attacked"))}
                f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
            for tok in self.attack_only:
                rec = {"type": "token", "token": tok.token, "hint": hint(tok.token),
                       "class": "attack_only", "sub": "sprayed", "principal": None}
                f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
            for a in self.attacks:
                f.write(json.dumps(a, ensure_ascii=False, sort_keys=True) + "\n")
            for fl in self.flights:
                rec = dict(fl, type="flight", hint=hint(fl["token"]),
                           last_use=iso(fl["last_use"]), first_use=iso(fl["first_use"]))
                f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
        os.replace(tmp, os.path.join(out, "labels.jsonl"))
        return n

    # -- statistics ----------------------------------------------------------
    def stats(self, n_lines, out=sys.stdout):
        geo = self.geo
        w = out.write
        w("scenario: seed=%d period=%s..%s lines=%d attack week from %s\n"
          % (self.seed, iso_s(T0), iso_s(T1), n_lines, iso_s(ATTACK_T0)))
        by = defaultdict(lambda: [0, 0, set(), 0])
        for t in self.tokens:
            b = by[t.cls]
            b[0] += 1
            b[1] += len(t.ev)
            b[2].add(t.user if t.cls == "rotating" else t.token)
            b[3] += sum(1 for e in t.ev if e[2] != "ok")
        w("\n| class | tokens | identities | lines | rejected |\n|---|---:|---:|---:|---:|\n")
        for cls in sorted(by):
            b = by[cls]
            w("| %s | %d | %d | %d | %d |\n" % (cls, b[0], len(b[2]), b[1], b[3]))
        w("| attack lines | %d fake tokens | | %d | %d |\n"
          % (len(self.attack_only), len(self.extra), sum(1 for x in self.extra if x[5] != "ok")))
        subs = Counter((t.cls, t.sub) for t in self.tokens if t.sub)
        w("\nsubclasses: %s\n" % ", ".join("%s/%s=%d" % (c, s, n) for (c, s), n in sorted(subs.items())))
        ak = Counter(a["kind"] for a in self.attacks)
        w("\nattacks: %s (total %d)\n" % (", ".join("%s=%d" % kv for kv in sorted(ak.items())),
                                          len(self.attacks)))
        for a in self.attacks:
            d = a["detail"]
            w("  %s %-17s %-19s %s %s..%s ip=%s %s\n" % (
                a["id"], a["kind"], a["target_class"] or "-", a["hint"] or "-", a["start"][5:19],
                a["end"][11:19], a["ip"], json.dumps(d, ensure_ascii=False, sort_keys=True)))
        fl = self.flights
        if fl:
            sp = sorted(f["kmh"] for f in fl)
            spr = sorted(f["kmh_after_radii"] for f in fl)
            w("\ntraveller flights: %d, %.0f..%.0f km, gap (gate use -> first use after landing) "
              "%.1f..%.1f h\n" % (len(fl), min(f["km"] for f in fl), max(f["km"] for f in fl),
                                  min(f["gap_h"] for f in fl), max(f["gap_h"] for f in fl)))
            w("  effective km/h: min %.0f median %.0f max %.0f; after radii max %.0f\n"
              % (sp[0], sp[len(sp) // 2], sp[-1], spr[-1]))
            w("  over 805 km/h (no radius): %d; over 900 km/h after radii: %d; "
              ">1000 km within 3 h: %d\n" % (
                  sum(1 for f in fl if f["kmh"] > 805), sum(1 for f in fl if f["kmh_after_radii"] > 900),
                  sum(1 for f in fl if f["km"] > 1000 and f["gap_h"] <= 3)))
            top = sorted(fl, key=lambda f: -f["kmh"])[:6]
            for f in top:
                w("    %s -> %s %.0f km block %.2f h gap %.2f h = %.0f km/h (%.0f after radii)\n"
                  % (f["from"], f["to"], f["km"], f["block_h"], f["gap_h"], f["kmh"], f["kmh_after_radii"]))
        # every consecutive pair of a normal token's successful checks
        w("\nnormal traffic, consecutive located checks of one token faster than 900 km/h "
          "after radii (excluding same IP, same /24|/48, same ASN, VPN egress):\n")
        vpn = [ipaddress.ip_network(c) for c in VPN_CIDRS]
        fast = Counter()
        for t in self.tokens:
            prev = None
            for e in t.ev:
                if e[2] != "ok":
                    continue
                a = ipaddress.ip_address(e[1])
                if any(a.version == v.version and a in v for v in vpn):
                    continue
                n = geo.lookup(e[1])
                if n is None or not n.located:
                    continue
                if prev is not None and prev[1] != e[1] and not same_prefix(prev[1], e[1]) \
                        and not (n.asn and n.asn == prev[2].asn):
                    km = haversine_km(prev[2].lat, prev[2].lon, n.lat, n.lon) - prev[2].radius - n.radius
                    dt = max(1.0, e[0] - prev[0]) / 3600.0
                    if km / dt > 900:
                        fast[(t.cls, t.sub, prev[2].city or prev[2].cc, n.city or n.cc)] += 1
                prev = (e[0], e[1], n)
        if not fast:
            w("  none\n")
        for k, v in sorted(fast.items(), key=lambda kv: -kv[1]):
            w("  %s%s %s <-> %s: %d pairs\n" % (k[0], "/" + k[1] if k[1] else "", k[2], k[3], v))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (scenario.log is ~35 MB: not the source tree)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--cities", default=DEFAULT_CSV, help="cities.csv of the test GeoIP database")
    ap.add_argument("--stats", action="store_true", help="print scenario statistics")
    a = ap.parse_args(argv)
    t = time.time()
    sc = Scenario(a.seed, a.cities)
    sc.build()
    n = sc.write(a.out)
    if a.stats:
        sc.stats(n)
    sys.stderr.write("gen_scenarios: %d lines, %d tokens, %d attacks -> %s (%.1f s)\n"
                     % (n, len(sc.tokens) + len(sc.attack_only), len(sc.attacks), a.out,
                        time.time() - t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
