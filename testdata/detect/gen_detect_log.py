#!/usr/bin/env python3
"""
gen_detect_log.py — the crafted log of the detection golden test
(tests/integration/test_detect_replay.py). Deterministic: no randomness.

    python3 testdata/detect/gen_detect_log.py > testdata/detect/gateway.log

IPs come from testdata/geoip/cities.csv (the test GeoIP database):
  192.0.2.0/26 Berlin, 192.0.2.64/26 Frankfurt (data centre),
  192.0.2.128/26 London, 198.51.100.0/27 New York,
  198.51.100.160/27 Amsterdam (VPN, allowlisted in rules.json),
  203.0.113.0/26 Tokyo, 203.0.113.128/26 Sydney.

Stories, each with the anomaly it must (or must not) produce:
  alice  Berlin office hours, then Tokyo 30 min after Berlin
         -> impossible_travel + new_country
  bob    London, alternating with the allowlisted VPN egress -> nothing
  svc    Frankfurt every 10 min, 24/7, then 200 checks in one minute
         -> rate_spike (once: cooldown)
  carol  Berlin, then 25 rejected checks in 2 minutes from a hostile
         "IP" (quote and a non-UTF-8 byte) -> failure_burst, escaped ip
  spray  one New York IP, 40 unknown tokens, all rejected -> ip_spraying
  dave   New York office hours (local), then 03:00 local -> off_hours
  erin   a new token every day (one principal), Berlin; after the
         principal has learned, a fresh token used from Sydney
         -> new_country judged against the principal
  frank  a real traveller: Berlin, then London 3 hours later -> nothing
         from geo_velocity (new_country for GB)
"""
import datetime

T0 = datetime.datetime(2026, 11, 2, 0, 0, 0, tzinfo=datetime.timezone.utc)  # a Monday
lines = []


def at(days=0, hours=0, minutes=0, seconds=0):
    return T0 + datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def emit(t, ip, user, token, result="ok", path="/v1/items"):
    stamp = t.strftime("%Y-%m-%dT%H:%M:%SZ")
    u = " user=%s" % user if user else ""
    lines.append((t, len(lines), ("%s ip=%s%s token=%s path=%s result=%s"
                                  % (stamp, ip, u, token, path, result)).encode("latin-1")))


def office(user, token, ip, utc_start, days=10, step_min=30, hours=8):
    for d in range(days):
        day = at(days=d)
        if day.weekday() >= 5:
            continue
        for k in range(hours * 60 // step_min):
            emit(day + datetime.timedelta(hours=utc_start, minutes=k * step_min), ip, user, token)


# alice: Berlin 07:00-15:00 UTC on weekdays, then Tokyo.
office("alice", "at-alice-000000000000009f2c", "192.0.2.10", 7)
emit(at(days=10, hours=9), "192.0.2.10", "alice", "at-alice-000000000000009f2c")
emit(at(days=10, hours=9, minutes=30), "203.0.113.5", "alice", "at-alice-000000000000009f2c")

# bob: London and the VPN egress in Amsterdam, alternating every 10 minutes.
for d in range(10):
    if at(days=d).weekday() >= 5:
        continue
    for k in range(24):
        ip = "192.0.2.130" if k % 2 == 0 else "198.51.100.170"
        emit(at(days=d, hours=8, minutes=10 * k), ip, "bob", "at-bob-0000000000000000b0b")

# svc: every 10 minutes around the clock from the data centre, then a burst.
for k in range(10 * 24 * 6):
    emit(at(minutes=10 * k, seconds=7), "192.0.2.70", "svc-billing", "st-svc-00000000000000005e7")
for k in range(200):
    emit(at(days=10, hours=3, minutes=1, seconds=k * 0.25), "192.0.2.70", "svc-billing",
         "st-svc-00000000000000005e7")

# carol: normal use, then a failure burst from a hostile source field.
office("carol", "at-carol-0000000000000ca401", "192.0.2.20", 7, days=3, step_min=60)
for k in range(25):
    emit(at(days=10, hours=12, seconds=k * 5), 'bad"ip\xff', "carol",
         "at-carol-0000000000000ca401", result="denied")

# spray: one IP, 40 unknown tokens, all rejected.
for k in range(40):
    emit(at(days=10, hours=14, seconds=k * 3), "198.51.100.9", None,
         "at-spray-%017d" % k, result="401")

# dave: New York 09:00-17:00 local (14:00-22:00 UTC in November), then 03:00 local.
office("dave", "at-dave-00000000000000da4e", "198.51.100.12", 14)
emit(at(days=10, hours=8), "198.51.100.12", "dave", "at-dave-00000000000000da4e")

# erin: rotating tokens, one per day, Berlin; then a new token from Sydney.
for d in range(10):
    if at(days=d).weekday() >= 5:
        continue
    for k in range(8):
        emit(at(days=d, hours=8 + k), "192.0.2.30", "erin", "at-erin-day%02d-0000000000e41" % d)
emit(at(days=10, hours=9), "192.0.2.30", "erin", "at-erin-day10-0000000000e41")
emit(at(days=10, hours=20), "203.0.113.140", "erin", "at-erin-day10b-000000000e41")

# frank: a real traveller, Berlin then London three hours later.
office("frank", "at-frank-00000000000000f4a", "192.0.2.40", 7)
emit(at(days=10, hours=7), "192.0.2.40", "frank", "at-frank-00000000000000f4a")
emit(at(days=10, hours=10), "192.0.2.140", "frank", "at-frank-00000000000000f4a")

lines.sort(key=lambda x: (x[0], x[1]))
import sys
out = sys.stdout.buffer
for _, _, line in lines:
    out.write(line + b"\n")
