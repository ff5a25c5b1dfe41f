#!/usr/bin/env python3
"""test_schema.py — the JSON Schemas in rules/ against the shipped files, the
daemon's own validation (`tokenwatch check`) and the C source.

  ShippedFiles    every shipped config and format file validates against its
                  schema (and `tokenwatch check` accepts the configs).
  CheckAgreement  `tokenwatch check` and the schema both reject each invalid
                  config and format below, and both point at the same JSON
                  path (schema_lite reports paths in tokenwatch's notation);
                  a short list of rules only `check` can enforce is pinned
                  too, so tightening either side shows up here.
  Drift           the keys, ranges, defaults and enums in analyzer/*.c match
                  the schemas, and docs/configuration.md and the man page
                  name every key: adding a key to the code without the
                  schema and docs fails here.

Run one class: test_schema.py Drift. Environment: TW_BIN (the tokenwatch
binary; CheckAgreement needs it), TW_SOURCE_DIR (the source tree).
"""

import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
import schema_lite  # noqa: E402

SRC = os.environ.get("TW_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
TW_BIN = os.environ.get("TW_BIN")
CONFIG_SCHEMA = os.path.join(SRC, "rules", "tokenwatch.schema.json")
FORMAT_SCHEMA = os.path.join(SRC, "rules", "format.schema.json")
FORMATS_DIR = os.path.join(SRC, "rules", "formats")
RULES_SCHEMA = os.path.join(SRC, "rules", "rules.schema.json")
GEOIP_DIR = os.path.join(SRC, "testdata", "geoip")
CITY_DB = os.path.join(GEOIP_DIR, "GeoLite2-City-Test.mmdb")
ASN_DB = os.path.join(GEOIP_DIR, "GeoLite2-ASN-Test.mmdb")
DEFAULT_RULES = os.path.join(SRC, "rules", "default.json")

try:  # Optional cross-check when a real implementation happens to be there.
    import jsonschema  # type: ignore
except ImportError:
    jsonschema = None


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def shipped_configs():
    # rules/default.json is a detection rules file, not a config.
    files = [p for p in sorted(glob.glob(os.path.join(SRC, "rules", "*.json")))
             if not p.endswith(".schema.json") and os.path.basename(p) != "default.json"]
    files.append(os.path.join(SRC, "packaging", "tokenwatch.json"))
    return files


def shipped_formats():
    return sorted(glob.glob(os.path.join(FORMATS_DIR, "*.json")))


def shipped_rules():
    # Detection rules files: the shipped defaults and the golden-test rules.
    return [DEFAULT_RULES, os.path.join(SRC, "testdata", "detect", "rules.json")]


def rules_config(rules_file):
    """A config (as a dict) whose rules_file is rules_file."""
    return dict(base_config(), rules_file=rules_file)


def run_check(config):
    if not TW_BIN:
        raise unittest.SkipTest("TW_BIN is not set")
    p = subprocess.run([TW_BIN, "check", "-c", config], capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout + p.stderr


# --------------------------------------------------------------------------

class ShippedFiles(unittest.TestCase):
    def setUp(self):
        self.config = schema_lite.load(CONFIG_SCHEMA)
        self.format = schema_lite.load(FORMAT_SCHEMA)

    def test_configs_validate(self):
        files = shipped_configs()
        self.assertGreaterEqual(len(files), 2, files)
        for path in files:
            with self.subTest(path=os.path.relpath(path, SRC)):
                self.assertEqual(self.config.errors(read_json(path)), [])

    def test_formats_validate(self):
        files = shipped_formats()
        self.assertGreaterEqual(len(files), 3, files)
        for path in files:
            with self.subTest(path=os.path.relpath(path, SRC)):
                self.assertEqual(self.format.errors(read_json(path)), [])

    def test_check_accepts_shipped_configs(self):
        # The example config names the installed formats_dir by default;
        # point it at the source tree's formats here.
        with tempfile.TemporaryDirectory() as tmp:
            for path in shipped_configs():
                doc = read_json(path)
                if "formats_dir" in doc:
                    target = path
                else:
                    doc["formats_dir"] = FORMATS_DIR
                    target = os.path.join(tmp, os.path.basename(path))
                    with open(target, "w") as f:
                        json.dump(doc, f)
                with self.subTest(path=os.path.relpath(path, SRC)):
                    rc, out = run_check(target)
                    self.assertEqual(rc, 0, out)
                    self.assertIn("config OK", out)

    def test_schemas_are_valid_2020_12(self):
        if jsonschema is None:
            self.skipTest("python jsonschema not installed; schema_lite checked the "
                          "keywords it knows")
        for path in (CONFIG_SCHEMA, FORMAT_SCHEMA):
            jsonschema.Draft202012Validator.check_schema(read_json(path))

    def test_schema_lite_agrees_with_jsonschema(self):
        if jsonschema is None:
            self.skipTest("python jsonschema not installed")
        docs = [(CONFIG_SCHEMA, read_json(p)) for p in shipped_configs()]
        docs += [(FORMAT_SCHEMA, read_json(p)) for p in shipped_formats()]
        docs += [(CONFIG_SCHEMA, d) for _, d, _ in invalid_configs()]
        docs += [(FORMAT_SCHEMA, d) for _, d, _ in INVALID_FORMATS]
        for schema_path, doc in docs:
            ours = not schema_lite.load(schema_path).errors(doc)
            theirs = jsonschema.Draft202012Validator(read_json(schema_path)).is_valid(doc)
            self.assertEqual(ours, theirs, json.dumps(doc))

    def test_rules_validate(self):
        rules = schema_lite.load(RULES_SCHEMA)
        for path in shipped_rules():
            with self.subTest(path=os.path.relpath(path, SRC)):
                self.assertEqual(rules.errors(read_json(path)), [])

    def test_check_accepts_shipped_rules(self):
        with tempfile.TemporaryDirectory() as tmp:
            for path in shipped_rules():
                config = os.path.join(tmp, "config.json")
                with open(config, "w") as f:
                    json.dump(rules_config(path), f)
                with self.subTest(path=os.path.relpath(path, SRC)):
                    rc, out = run_check(config)
                    self.assertEqual(rc, 0, out)
                    self.assertIn("config OK", out)

    def test_rules_schema_is_valid_2020_12(self):
        if jsonschema is None:
            self.skipTest("python jsonschema not installed; schema_lite checked the "
                          "keywords it knows")
        jsonschema.Draft202012Validator.check_schema(read_json(RULES_SCHEMA))

    def test_rules_schema_lite_agrees_with_jsonschema(self):
        if jsonschema is None:
            self.skipTest("python jsonschema not installed")
        docs = [read_json(p) for p in shipped_rules()]
        docs += [d for _, d, _ in invalid_rules()]
        docs += [rules_patched(c) for _, c, _ in CHECK_ONLY_RULES]
        docs += [rules_patched(c) for _, c in VALID_RULES]
        ours_schema = schema_lite.load(RULES_SCHEMA)
        theirs_schema = jsonschema.Draft202012Validator(read_json(RULES_SCHEMA))
        for doc in docs:
            self.assertEqual(not ours_schema.errors(doc), theirs_schema.is_valid(doc),
                             json.dumps(doc))


# --------------------------------------------------------------------------
# Invalid configs: (name, document, JSON path both must point at). Documents
# are the base config with one change; DEL removes a key.

DEL = object()


def base_config():
    return {
        "state_dir": "state",
        "formats_dir": FORMATS_DIR,
        "inputs": [{"name": "gw", "path": "gw.log", "format": "generic-text"}],
    }


def patched(changes):
    doc = base_config()
    for dotted, value in changes.items():
        node = doc
        keys = dotted.split(".")
        for k in keys[:-1]:
            k = int(k) if k.isdigit() else k
            if isinstance(node, dict) and k not in node:
                node[k] = {}
            node = node[k]
        last = int(keys[-1]) if keys[-1].isdigit() else keys[-1]
        if value is DEL:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return doc


CONFIG_CASES = [
    ("not-an-object", ["state_dir"], ""),
    ("missing-state-dir", {"state_dir": DEL}, "state_dir"),
    ("unknown-top-key", {"statedir": "x"}, "statedir"),
    ("empty-state-dir", {"state_dir": ""}, "state_dir"),
    ("state-dir-number", {"state_dir": 1}, "state_dir"),
    ("empty-formats-dir", {"formats_dir": ""}, "formats_dir"),
    ("log-level-unknown", {"log_level": "verbose"}, "log_level"),
    ("log-level-upper", {"log_level": "INFO"}, "log_level"),
    ("interval-too-small", {"state_interval_ms": 10}, "state_interval_ms"),
    ("interval-too-big", {"state_interval_ms": 3600001}, "state_interval_ms"),
    ("interval-fraction", {"state_interval_ms": 1500.5}, "state_interval_ms"),
    ("interval-string", {"state_interval_ms": "5000"}, "state_interval_ms"),
    ("http-string", {"http": "127.0.0.1:9477"}, "http"),
    ("http-unknown-key", {"http.port": 9477}, "http.port"),
    ("listen-hostname", {"http.listen": "localhost:9477"}, "http.listen"),
    ("listen-no-port", {"http.listen": "127.0.0.1"}, "http.listen"),
    ("listen-port-too-big", {"http.listen": "127.0.0.1:65536"}, "http.listen"),
    ("listen-bad-octet", {"http.listen": "256.0.0.1:9477"}, "http.listen"),
    ("listen-v6-no-brackets", {"http.listen": "::1:9477"}, "http.listen"),
    ("listen-empty", {"http.listen": ""}, "http.listen"),
    ("max-connections-zero", {"http.max_connections": 0}, "http.max_connections"),
    ("timeout-too-big", {"http.timeout_s": 3601}, "http.timeout_s"),
    ("http-auth-string", {"http.auth": "token"}, "http.auth"),
    ("http-auth-unknown-key", {"http.auth.token_file": "t"}, "http.auth.token_file"),
    ("http-auth-empty-file", {"http.auth.bearer_token_file": ""},
     "http.auth.bearer_token_file"),
    ("http-metrics-auth-string", {"http.metrics_auth": "yes"}, "http.metrics_auth"),
    ("http-tls-array", {"http.tls": ["c.pem", "k.pem"]}, "http.tls"),
    ("http-tls-without-key", {"http.tls": {"cert_file": "c.pem"}}, "http.tls.key_file"),
    ("http-tls-empty-cert", {"http.tls": {"cert_file": "", "key_file": "k.pem"}},
     "http.tls.cert_file"),
    ("http-tls-unknown-key", {"http.tls": {"cert_file": "c", "key_file": "k", "ca": "x"}},
     "http.tls.ca"),
    ("follow-array", {"follow": []}, "follow"),
    ("follow-unknown-key", {"follow.inotfy": True}, "follow.inotfy"),
    ("max-line-too-small", {"follow.max_line_bytes": 255}, "follow.max_line_bytes"),
    ("read-block-too-small", {"follow.read_block_bytes": 1024}, "follow.read_block_bytes"),
    ("read-block-too-big", {"follow.read_block_bytes": 67108865}, "follow.read_block_bytes"),
    ("rotate-wait-negative", {"follow.rotate_wait_ms": -1}, "follow.rotate_wait_ms"),
    ("poll-too-fast", {"follow.poll_interval_ms": 5}, "follow.poll_interval_ms"),
    ("inotify-string", {"follow.inotify": "yes"}, "follow.inotify"),
    ("inotify-number", {"follow.inotify": 1}, "follow.inotify"),
    ("inputs-object", {"inputs": {"name": "gw"}}, "inputs"),
    ("input-string", {"inputs": ["gw.log"]}, "inputs[0]"),
    ("input-missing-path", {"inputs.0.path": DEL}, "inputs[0].path"),
    ("input-missing-name", {"inputs.0.name": DEL}, "inputs[0].name"),
    ("input-missing-format", {"inputs.0.format": DEL}, "inputs[0].format"),
    ("input-name-space", {"inputs.0.name": "api gateway"}, "inputs[0].name"),
    ("input-name-too-long", {"inputs.0.name": "x" * 65}, "inputs[0].name"),
    ("input-start-unknown", {"inputs.0.start": "middle"}, "inputs[0].start"),
    ("input-unknown-key", {"inputs.0.tags": ["a"]}, "inputs[0].tags"),
    ("second-input-bad", {"inputs.1": {"name": "v", "path": "v.log", "format": 3}},
     "inputs[1].format"),
    ("geoip-string", {"geoip": "GeoLite2-City.mmdb"}, "geoip"),
    ("geoip-without-city-db", {"geoip.asn_db": ASN_DB}, "geoip.city_db"),
    ("geoip-unknown-key", {"geoip": {"city_db": CITY_DB, "isp_db": ASN_DB}}, "geoip.isp_db"),
    ("geoip-empty-city-db", {"geoip.city_db": ""}, "geoip.city_db"),
    ("geoip-asn-db-number", {"geoip": {"city_db": CITY_DB, "asn_db": 1}}, "geoip.asn_db"),
    ("cache-entries-negative", {"geoip": {"city_db": CITY_DB, "cache_entries": -1}},
     "geoip.cache_entries"),
    ("cache-entries-too-big", {"geoip": {"city_db": CITY_DB, "cache_entries": 16777217}},
     "geoip.cache_entries"),
    ("rules-file-empty", {"rules_file": ""}, "rules_file"),
    ("rules-file-array", {"rules_file": [DEFAULT_RULES]}, "rules_file"),
    ("events-file-number", {"events_file": 1}, "events_file"),
    ("max-tokens-too-small", {"max_tokens": 999}, "max_tokens"),
    ("max-tokens-too-big", {"max_tokens": 268435457}, "max_tokens"),
    ("max-tokens-fraction", {"max_tokens": 5000.5}, "max_tokens"),
    ("syslog-true", {"syslog": True}, "syslog"),
    ("syslog-unknown-key", {"syslog.host": "loghost"}, "syslog.host"),
    ("syslog-enabled-string", {"syslog.enabled": "yes"}, "syslog.enabled"),
    ("syslog-facility-unknown", {"syslog.facility": "kern"}, "syslog.facility"),
    ("syslog-facility-upper", {"syslog.facility": "AUTHPRIV"}, "syslog.facility"),
    ("syslog-facility-local8", {"syslog.facility": "local8"}, "syslog.facility"),
    ("syslog-severity-unknown", {"syslog.severity_min": "info"}, "syslog.severity_min"),
    ("syslog-ident-empty", {"syslog.ident": ""}, "syslog.ident"),
    ("syslog-ident-space", {"syslog.ident": "token watch"}, "syslog.ident"),
    ("syslog-ident-too-long", {"syslog.ident": "x" * 33}, "syslog.ident"),
    ("syslog-socket-empty", {"syslog.socket": ""}, "syslog.socket"),
    ("syslog-per-round-zero", {"syslog.max_per_round": 0}, "syslog.max_per_round"),
    ("syslog-per-round-too-big", {"syslog.max_per_round": 1000001}, "syslog.max_per_round"),
]


def invalid_configs():
    out = []
    for name, change, path in CONFIG_CASES:
        doc = change if isinstance(change, list) else patched(change)
        out.append((name, doc, path))
    return out


# Rules the schema cannot express; `check` enforces them. Pinned so that a
# change on either side is noticed (and documented in docs/configuration.md).
CHECK_ONLY_CONFIGS = [
    ("unknown-format", {"inputs.0.format": "nginx"}, "inputs[0].format"),
    ("duplicate-input-name",
     {"inputs.1": {"name": "gw", "path": "other.log", "format": "generic-text"}},
     "inputs[1].name"),
    ("duplicate-input-path",
     {"inputs.1": {"name": "other", "path": "gw.log", "format": "generic-json"}},
     "inputs[1].path"),
    ("formats-dir-missing", {"formats_dir": "/nonexistent/tokenwatch/formats"},
     "formats_dir"),
    ("listen-v6-garbage", {"http.listen": "[::1::2::3]:9477"}, "http.listen"),
    ("metrics-auth-without-credentials", {"http.metrics_auth": True}, "http.metrics_auth"),
    ("bearer-token-file-missing", {"http.auth.bearer_token_file": "/nonexistent/tw/token"},
     "http.auth.bearer_token_file"),
    ("basic-auth-file-missing", {"http.auth.basic_auth_file": "/nonexistent/tw/users"},
     "http.auth.basic_auth_file"),
    ("tls-cert-missing", {"http.tls": {"cert_file": "/nonexistent/c.pem",
                                       "key_file": "/nonexistent/k.pem"}},
     "http.tls.cert_file"),
    ("geoip-city-db-missing", {"geoip.city_db": "/nonexistent/tokenwatch/City.mmdb"},
     "geoip.city_db"),
    ("geoip-asn-db-directory", {"geoip": {"city_db": CITY_DB, "asn_db": GEOIP_DIR}},
     "geoip.asn_db"),
    ("syslog-socket-too-long", {"syslog.socket": "/" + "s" * 108}, "syslog.socket"),
]

VALID_CONFIGS = [
    ("every-key", {
        "log_level": "debug", "state_interval_ms": 50,
        "http": {"listen": "[::1]:0", "max_connections": 100000, "timeout_s": 3600},
        "follow": {"max_line_bytes": 256, "read_block_bytes": 67108864,
                   "rotate_wait_ms": 0, "poll_interval_ms": 60000, "inotify": False},
        "inputs.0.start": "beginning",
    }),
    ("warning-alias", {"log_level": "warning"}),
    ("integral-float", {"state_interval_ms": 5000.0}),
    ("no-inputs", {"inputs": []}),
    ("port-zero", {"http.listen": "0.0.0.0:0"}),
    ("http-auth-empty", {"http.auth": {}, "http.metrics_auth": False}),
    ("detection-keys", {"geoip": {"city_db": CITY_DB, "asn_db": ASN_DB, "cache_entries": 0},
                        "rules_file": DEFAULT_RULES, "events_file": "events.jsonl",
                        "max_tokens": 1000}),
    ("detection-limits", {"geoip": {"city_db": CITY_DB, "cache_entries": 16777216},
                          "max_tokens": 268435456}),
    ("syslog-every-key", {"syslog": {"enabled": True, "ident": "tw.audit-1", "facility": "local7",
                                     "severity_min": "critical", "socket": "/run/log.sock",
                                     "max_per_round": 1000000}}),
    ("syslog-defaults", {"syslog": {}}),
    ("syslog-disabled", {"syslog": {"enabled": False, "max_per_round": 1}}),
]

# Invalid format files: (name, document, JSON path).
REGEX_BASE = {"name": "t", "type": "regex",
              "pattern": r"^(?<time>\S+) (?<ip>\S+) (?<token>\S+) (?<result>\S+)$"}
JSON_BASE = {"name": "t", "type": "json",
             "fields": {"token": "a.token", "ip": "ip", "time": "time", "result": "r"}}


def fmt(base, **changes):
    doc = copy.deepcopy(base)
    for k, v in changes.items():
        if v is DEL:
            del doc[k]
        else:
            doc[k] = v
    return doc


def fields(**changes):
    f = dict(JSON_BASE["fields"])
    for k, v in changes.items():
        if v is DEL:
            del f[k]
        else:
            f[k] = v
    return fmt(JSON_BASE, fields=f)


INVALID_FORMATS = [
    ("not-an-object", ["t"], ""),
    ("missing-name", fmt(REGEX_BASE, name=DEL), "name"),
    ("name-space", fmt(REGEX_BASE, name="my format"), "name"),
    ("name-too-long", fmt(REGEX_BASE, name="n" * 65), "name"),
    ("missing-type", fmt(REGEX_BASE, type=DEL), "type"),
    ("type-unknown", fmt(REGEX_BASE, type="xml"), "type"),
    ("description-number", fmt(REGEX_BASE, description=5), "description"),
    ("unknown-key", fmt(REGEX_BASE, regex="x"), "regex"),
    ("regex-without-pattern", fmt(REGEX_BASE, pattern=DEL), "pattern"),
    ("regex-empty-pattern", fmt(REGEX_BASE, pattern=""), "pattern"),
    ("regex-with-fields", fmt(REGEX_BASE, fields=JSON_BASE["fields"]), "fields"),
    ("json-without-fields", fmt(JSON_BASE, fields=DEL), "fields"),
    ("json-with-pattern", fmt(JSON_BASE, pattern="^x$"), "pattern"),
    ("fields-string", fmt(JSON_BASE, fields="token"), "fields"),
    ("fields-missing-token", fields(token=DEL), "fields.token"),
    ("fields-missing-time", fields(time=DEL), "fields.time"),
    ("fields-unknown", fields(tokn="x"), "fields.tokn"),
    ("fields-empty-path", fields(ip=""), "fields.ip"),
    ("fields-empty-segment", fields(ip="client..ip"), "fields.ip"),
    ("fields-leading-dot", fields(ip=".ip"), "fields.ip"),
    ("fields-empty-array", fields(token=[]), "fields.token"),
    ("fields-array-number", fields(token=["a", 1]), "fields.token[1]"),
    ("fields-number", fields(user=7), "fields.user"),
    ("time-format-unknown", fmt(REGEX_BASE, time_format="iso8601"), "time_format"),
    ("rejected-no-test", fmt(REGEX_BASE, rejected={"field": "result"}), "rejected"),
    ("rejected-string", fmt(REGEX_BASE, rejected="denied"), "rejected"),
    ("rejected-unknown-key", fmt(REGEX_BASE, rejected={"equals": "x", "regex": "y"}),
     "rejected.regex"),
    ("rejected-empty-equals", fmt(REGEX_BASE, rejected={"equals": []}), "rejected.equals"),
    ("rejected-empty-string", fmt(REGEX_BASE, rejected={"equals": ["401", ""]}),
     "rejected.equals[1]"),
    ("rejected-contains-number", fmt(REGEX_BASE, rejected={"contains": 401}),
     "rejected.contains"),
    ("rejected-field-empty", fmt(REGEX_BASE, rejected={"field": "", "equals": "x"}),
     "rejected.field"),
    ("filter-without-field", fmt(JSON_BASE, filter={"equals": "response"}), "filter.field"),
    ("filter-bad-path", fmt(JSON_BASE, filter={"field": "a.", "equals": "x"}),
     "filter.field"),
]

CHECK_ONLY_FORMATS = [
    ("pcre2-syntax", fmt(REGEX_BASE, pattern="^(?<token>[a-z+$"), "pattern"),
    ("missing-group", fmt(REGEX_BASE, pattern=r"^(?<time>\S+) (?<ip>\S+) (?<token>\S+)$"),
     "pattern"),
    ("rejected-no-such-group", fmt(REGEX_BASE, rejected={"field": "status", "equals": "x"}),
     "rejected.field"),
]

# Invalid detection rules files: (name, change, JSON path), the change applied
# to rules/default.json as in CONFIG_CASES. Its rules are, in order: rate,
# failures (scope token), failures (scope ip), geo_velocity, geo_new, off_hours.
# `check` is run on a config whose rules_file names the rules file.


def patch(doc, changes):
    for dotted, value in changes.items():
        node = doc
        keys = dotted.split(".")
        for k in keys[:-1]:
            k = int(k) if k.isdigit() else k
            if isinstance(node, dict) and k not in node:
                node[k] = {}
            node = node[k]
        last = int(keys[-1]) if keys[-1].isdigit() else keys[-1]
        if value is DEL:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return doc


def rules_patched(changes):
    return patch(read_json(DEFAULT_RULES), changes)


def many_rules(n):
    return [{"id": f"r{i}", "kind": "rate", "severity": "low"} for i in range(n)]


def bh(**changes):
    """A business_hours object with changes (DEL removes a key)."""
    out = {"time_zone": "UTC", "start": "07:00", "end": "20:00"}
    for k, v in changes.items():
        if v is DEL:
            del out[k]
        else:
            out[k] = v
    return out

RULES_CASES = [
    ("not-an-object", ["rules"], ""),
    ("missing-rules", {"rules": DEL}, "rules"),
    ("rules-object", {"rules": {"id": "x"}}, "rules"),
    ("too-many-rules", {"rules": many_rules(17)}, "rules"),
    ("unknown-top-key", {"cooldown": 60}, "cooldown"),
    ("cooldown-negative", {"cooldown_s": -1}, "cooldown_s"),
    ("cooldown-too-big", {"cooldown_s": 2592001}, "cooldown_s"),
    ("cooldown-fraction", {"cooldown_s": 1.5}, "cooldown_s"),
    ("learning-array", {"learning": [10, 7]}, "learning"),
    ("learning-unknown-key", {"learning.min_event": 3}, "learning.min_event"),
    ("min-events-string", {"learning.min_events": "10"}, "learning.min_events"),
    ("min-days-too-big", {"learning.min_days": 366}, "learning.min_days"),
    ("allowlist-unknown-key", {"allowlist.ips": []}, "allowlist.ips"),
    ("cidrs-string", {"allowlist.cidrs": "10.0.0.0/8"}, "allowlist.cidrs"),
    ("cidr-number", {"allowlist.cidrs": [10]}, "allowlist.cidrs[0]"),
    ("cidr-v4-prefix-too-long", {"allowlist.cidrs": ["10.0.0.0/8", "10.0.0.0/33"]},
     "allowlist.cidrs[1]"),
    ("cidr-v6-prefix-too-long", {"allowlist.cidrs": ["2001:db8::/129"]}, "allowlist.cidrs[0]"),
    ("cidr-empty-prefix", {"allowlist.cidrs": ["10.0.0.0/"]}, "allowlist.cidrs[0]"),
    ("cidr-host-name", {"allowlist.cidrs": ["vpn.example.com"]}, "allowlist.cidrs[0]"),
    ("cidr-bad-octet", {"allowlist.cidrs": ["10.0.0.256/32"]}, "allowlist.cidrs[0]"),
    ("token-id-upper-case", {"allowlist.token_ids": ["tw_0123456789ABCDEF"]},
     "allowlist.token_ids[0]"),
    ("token-id-short", {"allowlist.token_ids": ["tw_0123"]}, "allowlist.token_ids[0]"),
    ("bh-string", {"business_hours": "07:00-20:00"}, "business_hours"),
    ("bh-unknown-key", {"business_hours": bh(timezone="UTC")}, "business_hours.timezone"),
    ("bh-missing-time-zone", {"business_hours": bh(time_zone=DEL)},
     "business_hours.time_zone"),
    ("bh-missing-start", {"business_hours": bh(start=DEL)}, "business_hours.start"),
    ("bh-missing-end", {"business_hours": bh(end=DEL)}, "business_hours.end"),
    ("bh-time-zone-path", {"business_hours": bh(time_zone="/etc/localtime")},
     "business_hours.time_zone"),
    ("bh-days-reversed", {"business_hours": bh(days="fri-mon")}, "business_hours.days"),
    ("bh-days-capitalised", {"business_hours": bh(days="Mon-Fri")},
     "business_hours.days"),
    ("bh-days-trailing-comma", {"business_hours": bh(days="mon-fri,")},
     "business_hours.days"),
    ("bh-start-one-digit-hour", {"business_hours": bh(start="7:00")},
     "business_hours.start"),
    ("bh-start-minute-60", {"business_hours": bh(start="07:60")},
     "business_hours.start"),
    ("bh-end-after-24", {"business_hours": bh(end="24:30")}, "business_hours.end"),
    ("rule-string", {"rules.0": "rate_spike"}, "rules[0]"),
    ("rule-missing-id", {"rules.0.id": DEL}, "rules[0].id"),
    ("rule-id-space", {"rules.0.id": "rate spike"}, "rules[0].id"),
    ("rule-id-too-long", {"rules.0.id": "r" * 65}, "rules[0].id"),
    ("rule-missing-kind", {"rules.0.kind": DEL}, "rules[0].kind"),
    ("rule-kind-unknown", {"rules.0.kind": "velocity"}, "rules[0].kind"),
    ("rule-missing-severity", {"rules.0.severity": DEL}, "rules[0].severity"),
    ("rule-severity-upper", {"rules.0.severity": "HIGH"}, "rules[0].severity"),
    ("rule-severity-unknown", {"rules.0.severity": "warn"}, "rules[0].severity"),
    ("rule-action-unknown", {"rules.0.action": "block"}, "rules[0].action"),
    ("rule-key-of-other-kind", {"rules.0.scope": "ip"}, "rules[0].scope"),
    ("rule-unknown-key", {"rules.3.max_speed": 900}, "rules[3].max_speed"),
    ("rate-window-too-small", {"rules.0.window_s": 9}, "rules[0].window_s"),
    ("rate-window-too-big", {"rules.0.window_s": 3601}, "rules[0].window_s"),
    ("rate-multiplier-below-1", {"rules.0.multiplier": 0.5}, "rules[0].multiplier"),
    ("rate-multiplier-string", {"rules.0.multiplier": "10"}, "rules[0].multiplier"),
    ("rate-sigmas-negative", {"rules.0.sigmas": -1}, "rules[0].sigmas"),
    ("rate-min-count-zero", {"rules.0.min_count": 0}, "rules[0].min_count"),
    ("rate-ceiling-fraction", {"rules.0.ceiling": 600.5}, "rules[0].ceiling"),
    ("rate-alpha-zero", {"rules.0.alpha": 0}, "rules[0].alpha"),
    ("rate-alpha-too-big", {"rules.0.alpha": 1.5}, "rules[0].alpha"),
    ("failures-scope-unknown", {"rules.1.scope": "user"}, "rules[1].scope"),
    ("failures-distinct-with-scope-token", {"rules.1.min_distinct_tokens": 5},
     "rules[1].min_distinct_tokens"),
    ("failures-distinct-default-scope", {"rules.1.scope": DEL, "rules.1.min_distinct_tokens": 5},
     "rules[1].min_distinct_tokens"),
    ("failures-window-too-big", {"rules.1.window_s": 86401}, "rules[1].window_s"),
    ("failures-min-rejected-zero", {"rules.2.min_rejected": 0}, "rules[2].min_rejected"),
    ("failures-min-rejected-too-big", {"rules.1.min_rejected": 65536}, "rules[1].min_rejected"),
    ("failures-min-ratio-too-big", {"rules.1.min_ratio": 1.01}, "rules[1].min_ratio"),
    ("failures-distinct-too-big", {"rules.2.min_distinct_tokens": 201},
     "rules[2].min_distinct_tokens"),
    ("velocity-max-kmh-zero", {"rules.3.max_kmh": 0}, "rules[3].max_kmh"),
    ("velocity-min-km-too-big", {"rules.3.min_km": 20001}, "rules[3].min_km"),
    ("velocity-epsilon-zero", {"rules.3.epsilon_s": 0}, "rules[3].epsilon_s"),
    ("geo-new-both-false", {"rules.4.countries": False}, "rules[4].countries"),
    ("geo-new-countries-false-asns-default", {"rules.4.countries": False, "rules.4.asns": DEL},
     "rules[4].countries"),
    ("geo-new-asns-string", {"rules.4.asns": "yes"}, "rules[4].asns"),
    ("off-hours-policy-without-bh", {"rules.5.policy": True}, "rules[5].policy"),
    ("off-hours-neither", {"rules.5.learned": False}, "rules[5].learned"),
    ("off-hours-spread-too-big", {"rules.5.spread_hours": 12}, "rules[5].spread_hours"),
    ("off-hours-max-share-negative", {"rules.5.max_share": -0.1}, "rules[5].max_share"),
    ("off-hours-min-profile-zero", {"rules.5.min_profile": 0}, "rules[5].min_profile"),
]


def invalid_rules():
    out = []
    for name, change, path in RULES_CASES:
        doc = change if isinstance(change, list) else rules_patched(change)
        out.append((name, doc, path))
    return out


# Rules the rules schema cannot express; `check` enforces them.
CHECK_ONLY_RULES = [
    ("duplicate-rule-id", {"rules.1.id": "rate_spike"}, "rules[1].id"),
    ("bh-end-before-start", {"business_hours": bh(start="20:00", end="07:00")},
     "business_hours.end"),
    ("bh-unknown-time-zone", {"business_hours": bh(time_zone="Mars/Olympus_Mons")},
     "business_hours.time_zone"),
    ("cidr-v6-garbage", {"allowlist.cidrs": ["1::2::3/64"]}, "allowlist.cidrs[0]"),
    ("cidr-mapped-v4-short-prefix", {"allowlist.cidrs": ["::ffff:10.0.0.0/64"]},
     "allowlist.cidrs[0]"),
]

VALID_RULES = [
    ("minimal", {"rules": [{"id": "r", "kind": "rate", "severity": "low"}]}),
    ("no-rules", {"rules": []}),
    ("sixteen-rules", {"rules": many_rules(16)}),
    ("every-top-key", {"description": "x", "cooldown_s": 0,
                       "learning": {"min_events": 0, "min_days": 365},
                       "allowlist": {"cidrs": ["10.8.0.0/16", "2001:db8::/32", "192.0.2.1",
                                               "::ffff:10.0.0.0/104", "fe80::/10"],
                                     "token_ids": ["tw_0123456789abcdef"]},
                       "business_hours": {"time_zone": "Etc/UTC", "days": "mon-wed,fri-sun",
                                          "start": "00:00", "end": "24:00"}}),
    ("kind-defaults", {"rules": [{"id": k, "kind": k, "severity": "medium"}
                                 for k in ("rate", "failures", "geo_velocity", "geo_new",
                                           "off_hours")]}),
    ("integral-floats", {"cooldown_s": 3600.0, "rules.0.window_s": 60.0,
                         "rules.2.min_distinct_tokens": 5.0}),
    ("range-limits", {"rules.0.multiplier": 1000000, "rules.0.alpha": 0.001,
                      "rules.1.min_ratio": 0, "rules.2.scope": "ip", "rules.2.window_s": 86400,
                      "rules.3.epsilon_s": 1, "rules.3.min_km": 0,
                      "rules.5.spread_hours": 11}),
    ("geo-new-asns-only", {"rules.4.countries": False, "rules.4.asns": True}),
    ("off-hours-policy-only", {"business_hours": bh(), "rules.5.learned": False,
                               "rules.5.policy": True}),
    ("descriptions-of-any-type", {"description": ["not", "read"], "rules.0.description": 1}),
]


class CheckAgreement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.config = schema_lite.load(CONFIG_SCHEMA)
        cls.format = schema_lite.load(FORMAT_SCHEMA)
        cls.rules = schema_lite.load(RULES_SCHEMA)
        cls._tmp = tempfile.TemporaryDirectory()
        cls.tmp = cls._tmp.name

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def write(self, name, doc, sub=""):
        d = os.path.join(self.tmp, sub) if sub else self.tmp
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
        return path

    def assert_check_rejects(self, rc, out, file, path):
        self.assertEqual(rc, 2, f"check should exit 2:\n{out}")
        where = f"{file}: {path}: " if path else f"{file}: "
        self.assertIn(where, out, "check should name the file and the JSON path")

    def test_invalid_configs(self):
        for name, doc, path in invalid_configs():
            with self.subTest(case=name):
                file = self.write("config-" + name, doc)
                errors = self.config.errors(doc)
                self.assertTrue(errors, "the schema accepts it")
                self.assertIn(path, [p for p, _ in errors],
                              f"schema errors {errors} do not point at {path!r}")
                rc, out = run_check(file)
                self.assert_check_rejects(rc, out, file, path)

    def test_check_only_configs(self):
        for name, change, path in CHECK_ONLY_CONFIGS:
            with self.subTest(case=name):
                doc = patched(change)
                file = self.write("checkonly-" + name, doc)
                self.assertEqual(self.config.errors(doc), [],
                                 "the schema now rejects this: move the case to "
                                 "CONFIG_CASES and update docs/configuration.md")
                rc, out = run_check(file)
                self.assert_check_rejects(rc, out, file, path)

    def test_valid_configs(self):
        for name, change in VALID_CONFIGS:
            with self.subTest(case=name):
                doc = patched(change)
                file = self.write("valid-" + name, doc)
                self.assertEqual(self.config.errors(doc), [])
                rc, out = run_check(file)
                self.assertEqual(rc, 0, out)

    def check_format(self, name, doc):
        d = os.path.join(self.tmp, "formats-" + name)
        file = self.write(name, doc, sub=d)
        config = self.write("fmtconfig-" + name, {"state_dir": "state", "formats_dir": d})
        rc, out = run_check(config)
        return file, rc, out

    def test_invalid_formats(self):
        for name, doc, path in INVALID_FORMATS:
            with self.subTest(case=name):
                errors = self.format.errors(doc)
                self.assertTrue(errors, "the schema accepts it")
                self.assertIn(path, [p for p, _ in errors],
                              f"schema errors {errors} do not point at {path!r}")
                file, rc, out = self.check_format(name, doc)
                if path:
                    self.assert_check_rejects(rc, out, file, path)
                else:
                    self.assertEqual(rc, 2, out)
                    self.assertIn(file, out)

    def test_check_only_formats(self):
        for name, doc, path in CHECK_ONLY_FORMATS:
            with self.subTest(case=name):
                self.assertEqual(self.format.errors(doc), [])
                file, rc, out = self.check_format(name, doc)
                self.assert_check_rejects(rc, out, file, path)

    def test_valid_formats(self):
        for name, doc in [("regex", REGEX_BASE), ("json", JSON_BASE),
                          ("json-alternatives",
                           fields(token=["a.accessor", "b.token"],
                                  user="u.name", path="req.path")),
                          ("everything", fmt(JSON_BASE, description="", time_format="epoch_ms",
                                             rejected={"field": "r", "equals": ["401"],
                                                       "contains": "denied"},
                                             filter={"field": "type", "equals": "response"}))]:
            with self.subTest(case=name):
                self.assertEqual(self.format.errors(doc), [])
                _, rc, out = self.check_format("valid-" + name, doc)
                self.assertEqual(rc, 0, out)

    def check_rules(self, name, doc):
        file = self.write("rules-" + name, doc)
        config = self.write("rulesconfig-" + name, rules_config(file))
        rc, out = run_check(config)
        return file, rc, out

    def test_invalid_rules(self):
        for name, doc, path in invalid_rules():
            with self.subTest(case=name):
                errors = self.rules.errors(doc)
                self.assertTrue(errors, "the schema accepts it")
                self.assertIn(path, [p for p, _ in errors],
                              f"schema errors {errors} do not point at {path!r}")
                file, rc, out = self.check_rules(name, doc)
                if path:
                    self.assert_check_rejects(rc, out, file, path)
                else:
                    self.assertEqual(rc, 2, out)
                    self.assertIn(file, out)

    def test_check_only_rules(self):
        for name, change, path in CHECK_ONLY_RULES:
            with self.subTest(case=name):
                doc = rules_patched(change)
                self.assertEqual(self.rules.errors(doc), [],
                                 "the schema now rejects this: move the case to "
                                 "RULES_CASES and update docs/configuration.md")
                file, rc, out = self.check_rules("checkonly-" + name, doc)
                self.assert_check_rejects(rc, out, file, path)

    def test_valid_rules(self):
        for name, change in VALID_RULES:
            with self.subTest(case=name):
                doc = rules_patched(change)
                self.assertEqual(self.rules.errors(doc), [])
                _, rc, out = self.check_rules("valid-" + name, doc)
                self.assertEqual(rc, 0, out)


# --------------------------------------------------------------------------

def c_source(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        text = f.read()
    # Comments would only confuse the patterns below.
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


ARRAY_RE = re.compile(r"static\s+const\s+char\s*\*\s*const\s+(\w+)\s*\[[^\]]*\]\s*=\s*\{(.*?)\};",
                      re.S)
FUNC_RE = re.compile(r"^(?:static\s+)?(?:const\s+)?[A-Za-z_][\w ]*[\s*]+(\w+)\(", re.M)


def string_arrays(rel):
    """{(function or "", array name): [string literals]} for every
    `static const char *const NAME[] = {...}` in the file."""
    text = c_source(rel)
    out = {}
    for m in ARRAY_RE.finditer(text):
        funcs = [f.group(1) for f in FUNC_RE.finditer(text, 0, m.start())]
        # File-scope arrays come before any function body they are used in;
        # a brace-depth count tells the two apart.
        depth = text[:m.start()].count("{") - text[:m.start()].count("}")
        scope = funcs[-1] if depth > 0 and funcs else ""
        out[(scope, m.group(1))] = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))
    return out


# Where each key array of the C code lives in the schemas. A new array whose
# name ends in "keys" (or any array in a file not listed here that is handed
# to tw_jv_object) must be added, with its schema and docs.
KEY_ARRAYS = {
    ("analyzer/config.c", "", "top_keys"): (CONFIG_SCHEMA, "#"),
    ("analyzer/config.c", "", "http_keys"): (CONFIG_SCHEMA, "#/properties/http"),
    ("analyzer/config.c", "", "http_auth_keys"): (CONFIG_SCHEMA,
                                                  "#/properties/http/properties/auth"),
    ("analyzer/config.c", "", "http_tls_keys"): (CONFIG_SCHEMA,
                                                 "#/properties/http/properties/tls"),
    ("analyzer/config.c", "", "follow_keys"): (CONFIG_SCHEMA, "#/properties/follow"),
    ("analyzer/config.c", "", "input_keys"): (CONFIG_SCHEMA, "#/properties/inputs/items"),
    ("analyzer/config.c", "", "geoip_keys"): (CONFIG_SCHEMA, "#/properties/geoip"),
    ("analyzer/config.c", "", "syslog_keys"): (CONFIG_SCHEMA, "#/properties/syslog"),
    ("analyzer/config.c", "", "freeze_keys"): (CONFIG_SCHEMA, "#/properties/freeze"),
    ("analyzer/config.c", "", "unfreeze_keys"): (CONFIG_SCHEMA, "#/properties/unfreeze"),
    ("analyzer/format.c", "build_format", "keys"): (FORMAT_SCHEMA, "#"),
    ("analyzer/format.c", "read_matcher", "keys"): (FORMAT_SCHEMA, "#/$defs/matcher"),
    ("analyzer/format.c", "", "field_names"): (FORMAT_SCHEMA, "#/properties/fields"),
    ("analyzer/detect.c", "", "top_keys"): (RULES_SCHEMA, "#"),
    ("analyzer/detect.c", "", "learning_keys"): (RULES_SCHEMA, "#/properties/learning"),
    ("analyzer/detect.c", "", "allow_keys"): (RULES_SCHEMA, "#/properties/allowlist"),
    ("analyzer/detect.c", "", "bh_keys"): (RULES_SCHEMA, "#/properties/business_hours"),
    ("analyzer/detect.c", "", "rate_keys"): (RULES_SCHEMA, "#/$defs/rate"),
    ("analyzer/detect.c", "", "fail_keys"): (RULES_SCHEMA, "#/$defs/failures"),
    ("analyzer/detect.c", "", "vel_keys"): (RULES_SCHEMA, "#/$defs/geo_velocity"),
    ("analyzer/detect.c", "", "new_keys"): (RULES_SCHEMA, "#/$defs/geo_new"),
    ("analyzer/detect.c", "", "off_keys"): (RULES_SCHEMA, "#/$defs/off_hours"),
}
# String arrays that are not config keys.
NOT_KEYS = {
    ("analyzer/format.c", "", "perr_names"),   # metric label values
    ("analyzer/detect.c", "", "kind_names"),   # enums: Drift.test_rules_enums_and_limits
    ("analyzer/detect.c", "", "sev_names"),
    ("analyzer/detect.c", "", "act_names"),
    ("analyzer/detect.c", "", "day_names"),
    ("analyzer/detect.c", "register_rule_cells", "labels"),   # metric label names
    ("analyzer/detect.c", "register_cells", "rl"),
    ("analyzer/detect.c", "register_cells", "names"),         # metric label values
}
# Config object prefixes used in tw_jv_* calls -> schema location.
PREFIXES = {
    '""': "#", '"http"': "#/properties/http", '"follow"': "#/properties/follow",
    '"http.auth"': "#/properties/http/properties/auth",
    '"http.tls"': "#/properties/http/properties/tls",
    "p": "#/properties/inputs/items",   # load_inputs: p = "inputs[i]"
    '"geoip"': "#/properties/geoip",
    '"syslog"': "#/properties/syslog",
    '"freeze"': "#/properties/freeze",
    '"unfreeze"': "#/properties/unfreeze",
}
# The same for the rules file (detect.c). "p" is "rules[i]": the common rule
# keys before load_rule's switch, the kind's own keys in its case.
RULE_PREFIXES = {
    '""': "#", '"learning"': "#/properties/learning",
    '"business_hours"': "#/properties/business_hours",
    "p": "#/properties/rules/items",
}
# Conditions of defaults that depend on another key ("a ? x : y" in detect.c):
# the schema gives x in its then and y in its else branch of this if.
RULE_CONDITIONS = {
    "r->scope_ip": {"properties": {"scope": {"const": "ip"}}, "required": ["scope"]},
}


def resolve(schema, ref):
    node = schema
    for part in ref[1:].split("/")[1:]:
        node = node[part]
    return node


def eval_c_int(expr):
    expr = expand_c_macros(expr)
    expr = re.sub(r"(?<=\d)(?:ULL|LL|UL|U|L)\b", "", expr.strip())
    if not re.fullmatch(r"[\d\s<>()*+-]+", expr):
        return None
    return eval(expr)  # digits and operators only


def expand_c_macros(expr):
    """Replaces TW_* integer macros of analyzer/*.h (TW_TOKENS_MAX) by their
    values; "1u << 28" style suffixes are dropped."""
    macros = {}
    for rel in glob.glob(os.path.join(SRC, "analyzer", "*.h")):
        with open(rel, encoding="utf-8") as f:
            text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
        for m in re.finditer(r"^#define[ \t]+(TW_\w+)[ \t]+([^\n\"]+?)[ \t]*$", text, re.M):
            macros[m.group(1)] = m.group(2)
    for _ in range(8):
        new = re.sub(r"\bTW_\w+\b",
                     lambda m: f"({macros[m.group(0)]})" if m.group(0) in macros else m.group(0),
                     expr)
        if new == expr:
            break
        expr = new
    return re.sub(r"(?<=\d)[uUlL]+\b", "", expr)


def eval_c_num(expr):
    """An integer expression or a floating literal ("1e6", "0.05")."""
    value = eval_c_int(expr)
    if value is None and re.fullmatch(r"\s*[\d.]+(?:[eE][-+]?\d+)?\s*", expr):
        value = float(expr)
    return value


def c_calls(rel, names):
    """[(function name, argument texts, offset)] for each call of one of names
    in rel; arguments are split at top-level commas."""
    text = c_source(rel)
    out = []
    for m in re.finditer(r"\b(" + "|".join(names) + r")\(", text):
        depth, args, start = 1, [], m.end()
        i = start
        while depth:
            c = text[i]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "," and depth == 1:
                args.append(text[start:i].strip())
                start = i + 1
            i += 1
        args.append(text[start:i - 1].strip())
        out.append((m.group(1), args, m.start()))
    return out


def c_defines():
    out = {}
    for rel in glob.glob(os.path.join(SRC, "analyzer", "*.h")):
        with open(rel, encoding="utf-8") as f:
            for m in re.finditer(r'^#define\s+(TW_\w+)\s+"([^"]*)"', f.read(), re.M):
                out[m.group(1)] = m.group(2)
    return out


def schema_paths(node, prefix, out, root):
    """Dotted key paths of every property, "inputs[].name" style."""
    if "$ref" in node:
        schema_paths(resolve(root, node["$ref"]), prefix, out, root)
    for sub in node.get("allOf", []):
        schema_paths(sub, prefix, out, root)
    for k, v in node.get("properties", {}).items():
        p = f"{prefix}.{k}" if prefix else k
        out.append(p)
        schema_paths(v, p, out, root)
    if "items" in node and isinstance(node["items"], dict) and \
            node["items"].get("type") == "object":
        schema_paths(node["items"], prefix + "[]", out, root)
    return out


class Drift(unittest.TestCase):
    def setUp(self):
        self.schemas = {CONFIG_SCHEMA: read_json(CONFIG_SCHEMA),
                        FORMAT_SCHEMA: read_json(FORMAT_SCHEMA)}
        self.schemas[RULES_SCHEMA] = read_json(RULES_SCHEMA)
        self.config = self.schemas[CONFIG_SCHEMA]
        self.rules = self.schemas[RULES_SCHEMA]

    def props(self, schema_file, ref):
        return set(resolve(self.schemas[schema_file], ref).get("properties", {}))

    def test_key_arrays_match_schema(self):
        found = set()
        for rel in ("analyzer/config.c", "analyzer/format.c", "analyzer/detect.c"):
            for (scope, name), keys in string_arrays(rel).items():
                ident = (rel, scope, name)
                if (rel, scope or "", name) in NOT_KEYS:
                    continue
                if ident not in KEY_ARRAYS:
                    self.fail(f"{rel}: string array {name} (in {scope or 'file scope'}) is "
                              "not mapped: if it lists config or format keys, describe "
                              "them in rules/*.schema.json and docs/configuration.md and "
                              "add it to KEY_ARRAYS in tests/package/test_schema.py; "
                              "otherwise add it to NOT_KEYS")
                found.add(ident)
                schema_file, ref = KEY_ARRAYS[ident]
                with self.subTest(array=f"{rel}:{scope}:{name}"):
                    in_code, in_schema = set(keys), self.props(schema_file, ref)
                    self.assertEqual(sorted(in_code - in_schema), [],
                                     f"keys in the code but not in "
                                     f"{os.path.basename(schema_file)} {ref}")
                    self.assertEqual(sorted(in_schema - in_code), [],
                                     f"keys in {os.path.basename(schema_file)} {ref} that "
                                     "the code does not accept")
        self.assertEqual(found, set(KEY_ARRAYS), "a mapped key array is gone from the code")

    def test_no_unmapped_key_arrays_elsewhere(self):
        # A new config section (rules, freeze hooks, ...) in another file.
        for path in sorted(glob.glob(os.path.join(SRC, "analyzer", "*.c")) +
                           glob.glob(os.path.join(SRC, "exporter", "*.c"))):
            rel = os.path.relpath(path, SRC)
            if rel in ("analyzer/config.c", "analyzer/format.c"):
                continue
            for (scope, name), _ in string_arrays(rel).items():
                if name.endswith("keys") and (rel, scope, name) not in KEY_ARRAYS:
                    self.fail(f"{rel}: key array {name} is not covered by a schema; add its "
                              "keys to rules/*.schema.json and docs/configuration.md and map "
                              "it in KEY_ARRAYS (tests/package/test_schema.py)")

    def calls(self, fn):
        text = c_source("analyzer/config.c")
        return re.findall(fn + r"\(\s*jv\s*,\s*\w+\s*,\s*(\"[^\"]*\"|\w+)\s*,\s*\"(\w+)\"\s*,"
                          r"([^;]*?)\)\s*(?:\|\||\)|;)", text, re.S)

    def node_for(self, prefix, key):
        self.assertIn(prefix, PREFIXES, f"config.c reads {key!r} under {prefix}; map the "
                                        "prefix in PREFIXES")
        obj = resolve(self.config, PREFIXES[prefix])
        self.assertIn(key, obj.get("properties", {}),
                      f"config.c reads {key!r} under {prefix}, the schema lacks it")
        return obj, obj["properties"][key]

    def test_integer_ranges_and_defaults(self):
        calls = self.calls("tw_jv_int")
        self.assertGreaterEqual(len(calls), 7)
        for prefix, key, rest in calls:
            args = [a.strip() for a in rest.split(",")]
            with self.subTest(key=f"{prefix}:{key}"):
                _, node = self.node_for(prefix, key)
                self.assertEqual(node.get("type"), "integer")
                self.assertEqual(node.get("minimum"), eval_c_int(args[0]), "minimum")
                self.assertEqual(node.get("maximum"), eval_c_int(args[1]), "maximum")
                default = eval_c_int(args[2])
                if default is not None:
                    self.assertEqual(node.get("default"), default, "default")

    def test_strings_required_and_defaults(self):
        defines = c_defines()
        calls = self.calls("tw_jv_string")
        self.assertGreaterEqual(len(calls), 8)
        for prefix, key, rest in calls:
            required, default = [a.strip() for a in rest.split(",")][:2]
            with self.subTest(key=f"{prefix}:{key}"):
                obj, node = self.node_for(prefix, key)
                self.assertEqual(node.get("type"), "string")
                self.assertEqual(key in obj.get("required", []), required == "true",
                                 "required")
                if default.startswith('"'):
                    self.assertEqual(node.get("default"), default.strip('"'), "default")
                elif default in defines:
                    self.assertEqual(node.get("default"), defines[default], "default")

    def test_booleans(self):
        calls = self.calls("tw_jv_bool")
        self.assertGreaterEqual(len(calls), 1)
        for prefix, key, rest in calls:
            default = rest.split(",")[0].strip()
            with self.subTest(key=f"{prefix}:{key}"):
                _, node = self.node_for(prefix, key)
                self.assertEqual(node.get("type"), "boolean")
                self.assertEqual(node.get("default"), default == "true")

    def test_enums(self):
        log = c_source("analyzer/log.c")
        levels = re.findall(r'"(\w+)"', re.search(r"level_names\[\]\s*=\s*\{(.*?)\}", log,
                                                  re.S).group(1))
        levels += re.findall(r'strcmp\(s,\s*"(\w+)"\)', log)
        self.assertEqual(sorted(self.config["properties"]["log_level"]["enum"]),
                         sorted(set(levels)))
        cfg = c_source("analyzer/config.c")
        starts = re.findall(r'strcmp\(start,\s*"(\w+)"\)', cfg)
        self.assertEqual(sorted(resolve(self.config, "#/properties/inputs/items")
                                ["properties"]["start"]["enum"]), sorted(starts))
        tp = c_source("analyzer/timeparse.c")
        tfs = re.findall(r'"(\w+)"', re.search(r"format_names\[\]\s*=\s*\{(.*?)\}", tp,
                                               re.S).group(1))
        fmt_schema = self.schemas[FORMAT_SCHEMA]
        self.assertEqual(sorted(fmt_schema["properties"]["time_format"]["enum"]), sorted(tfs))
        fc = c_source("analyzer/format.c")
        types = re.findall(r'strcmp\(type->valuestring,\s*"(\w+)"\)', fc)
        self.assertEqual(sorted(fmt_schema["properties"]["type"]["enum"]), sorted(types))

    def test_syslog_enums(self):
        # Facilities: syslogsink.c's table; severities: detect.c's names.
        syslog = resolve(self.config, "#/properties/syslog")["properties"]
        self.assertEqual(syslog["facility"]["enum"],
                         string_arrays("analyzer/syslogsink.c")[("", "facility_names")])
        self.assertEqual(syslog["severity_min"]["enum"],
                         string_arrays("analyzer/detect.c")[("", "sev_names")])

    def test_rules_file_default(self):
        # config.c passes NULL and falls back to TW_DEFAULT_RULES_FILE itself.
        self.assertEqual(self.config["properties"]["rules_file"].get("default"),
                         c_defines()["TW_DEFAULT_RULES_FILE"])

    def rule_node(self, args, pos, text):
        """(object schema, property schema) that a detect.c call reads."""
        prefix, key = args[2], args[3].strip('"')
        self.assertIn(prefix, RULE_PREFIXES, f"detect.c reads {key!r} under {prefix}; map "
                                             "the prefix in RULE_PREFIXES")
        ref = RULE_PREFIXES[prefix]
        if prefix == "p":
            switch = text.find("switch (r->kind)", text.rfind("static int load_rule(", 0, pos))
            if 0 <= switch < pos:
                kind = re.findall(r"case TW_KIND_(\w+):", text[switch:pos])[-1].lower()
                ref = f"#/$defs/{kind}"
        obj = resolve(self.rules, ref)
        self.assertIn(key, obj.get("properties", {}),
                      f"detect.c reads {key!r} at {ref}, rules.schema.json lacks it")
        return obj, obj["properties"][key]

    def assert_rule_default(self, obj, key, node, expr, value_of):
        if "?" in expr:
            cond, then, other = re.fullmatch(r"(.+?)\s*\?\s*(.+?)\s*:\s*(.+)", expr).groups()
            self.assertIn(cond, RULE_CONDITIONS, "map the condition in RULE_CONDITIONS")
            self.assertEqual(obj.get("if"), RULE_CONDITIONS[cond], "if")
            self.assertNotIn("default", node, "the default depends on " + cond)
            self.assertEqual(obj["then"]["properties"][key].get("default"), value_of(then),
                             "default (then)")
            self.assertEqual(obj["else"]["properties"][key].get("default"), value_of(other),
                             "default (else)")
        elif value_of(expr) is not None:
            self.assertEqual(node.get("default"), value_of(expr), "default")

    def test_rules_ranges_and_defaults(self):
        text = c_source("analyzer/detect.c")
        types = {"jv_u32": "integer", "tw_jv_int": "integer", "jv_num": "number",
                 "tw_jv_string": "string", "tw_jv_bool": "boolean"}
        seen = 0
        for fn, args, pos in c_calls("analyzer/detect.c", list(types)):
            if len(args) < 5 or not re.fullmatch(r'"\w+"', args[3]):
                continue   # a definition or a wrapper passing its key through
            seen += 1
            with self.subTest(call=f"{fn}:{args[2]}:{args[3]}"):
                obj, node = self.rule_node(args, pos, text)
                key = args[3].strip('"')
                self.assertEqual(node.get("type"), types[fn], "type")
                if types[fn] in ("integer", "number"):
                    self.assertEqual(node.get("minimum"), eval_c_num(args[4]), "minimum")
                    self.assertEqual(node.get("maximum"), eval_c_num(args[5]), "maximum")
                    self.assertIsNotNone(eval_c_num(args[4]))
                    self.assert_rule_default(obj, key, node, args[6], eval_c_num)
                elif types[fn] == "string":
                    self.assertEqual(key in obj.get("required", []), args[4] == "true",
                                     "required")
                    self.assert_rule_default(
                        obj, key, node, args[5],
                        lambda e: e.strip('"') if e.startswith('"') else None)
                else:
                    self.assert_rule_default(obj, key, node, args[4],
                                             lambda e: {"true": True, "false": False}.get(e))
        self.assertGreaterEqual(seen, 30)

    def test_rules_enums_and_limits(self):
        arrays = string_arrays("analyzer/detect.c")
        items = resolve(self.rules, "#/properties/rules/items")
        props = items["properties"]
        self.assertEqual(props["kind"]["enum"], arrays[("", "kind_names")])
        self.assertEqual(props["severity"]["enum"], arrays[("", "sev_names")])
        self.assertEqual(props["action"]["enum"], arrays[("", "act_names")])
        text = c_source("analyzer/detect.c")
        scopes = re.findall(r'strcmp\(scope,\s*"(\w+)"\)', text)
        self.assertEqual(sorted(self.rules["$defs"]["failures"]["properties"]["scope"]["enum"]),
                         sorted(set(scopes)))
        days = self.rules["properties"]["business_hours"]["properties"]["days"]["pattern"]
        self.assertEqual(sorted(set(re.findall(r"[a-z]{3}", days))),
                         sorted(arrays[("", "day_names")]))
        # rules: required, at most TW_RULES_MAX.
        self.assertIn("rules", self.rules["required"])
        self.assertEqual(self.rules["properties"]["rules"].get("maxItems"),
                         eval_c_int("TW_RULES_MAX"))
        # Each kind's keys (kind_keys[] in kind_names order) are the $defs
        # entry its if/then selects.
        kinds = re.search(r"kind_keys\[[^\]]*\]\s*=\s*\{(.*?)\}", text, re.S).group(1)
        branches = {b["if"]["properties"]["kind"]["const"]: b["then"]["$ref"]
                    for b in items["allOf"]}
        for kind, array in zip(arrays[("", "kind_names")], re.findall(r"\w+", kinds)):
            with self.subTest(kind=kind):
                self.assertEqual(branches.get(kind), f"#/$defs/{kind}")
                self.assertEqual(KEY_ARRAYS[("analyzer/detect.c", "", array)],
                                 (RULES_SCHEMA, f"#/$defs/{kind}"))

    def test_docs_name_every_rule_parameter(self):
        # Kind parameters live in $defs (test_docs_name_every_key does not
        # reach them); docs/configuration.md names them "rules[].KEY".
        with open(os.path.join(SRC, "docs", "configuration.md"), encoding="utf-8") as f:
            md = f.read()
        with open(os.path.join(SRC, "docs", "tokenwatch.json.5"), encoding="utf-8") as f:
            man = f.read()
        for kind in resolve(self.rules, "#/properties/rules/items")["properties"]["kind"]["enum"]:
            for key in self.rules["$defs"][kind]["properties"]:
                with self.subTest(kind=kind, key=key):
                    self.assertIn(f"`rules[].{key}`", md, "docs/configuration.md lacks this key")
                    self.assertRegex(man, r"\b" + re.escape(key) + r"\b",
                                     "docs/tokenwatch.json.5 lacks this key")

    def test_man_pages_carry_the_project_version(self):
        with open(os.path.join(SRC, "CMakeLists.txt"), encoding="utf-8") as f:
            version = re.search(r"project\(\s*tokenwatch\s+VERSION\s+([\d.]+)", f.read()).group(1)
        for page in ("tokenwatch.1", "tokenwatch.json.5"):
            with open(os.path.join(SRC, "docs", page), encoding="utf-8") as f:
                th = re.search(r"^\.TH .*$", f.read(), re.M).group(0)
            self.assertIn(f'"tokenwatch {version}"', th, f"docs/{page}: update .TH")

    def test_docs_name_every_key(self):
        with open(os.path.join(SRC, "docs", "configuration.md"), encoding="utf-8") as f:
            md = f.read()
        with open(os.path.join(SRC, "docs", "tokenwatch.json.5"), encoding="utf-8") as f:
            man = f.read()
        for schema_file, schema in self.schemas.items():
            for path in schema_paths(schema, "", [], schema):
                with self.subTest(key=path, schema=os.path.basename(schema_file)):
                    self.assertIn(f"`{path}`", md, "docs/configuration.md lacks this key")
                    leaf = path.rsplit(".", 1)[-1].replace("[]", "")
                    self.assertRegex(man, r"\b" + re.escape(leaf) + r"\b",
                                     "docs/tokenwatch.json.5 lacks this key")


if __name__ == "__main__":
    unittest.main(verbosity=2)
