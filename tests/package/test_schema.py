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

try:  # Optional cross-check when a real implementation happens to be there.
    import jsonschema  # type: ignore
except ImportError:
    jsonschema = None


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def shipped_configs():
    files = [p for p in sorted(glob.glob(os.path.join(SRC, "rules", "*.json")))
             if not p.endswith(".schema.json")]
    files.append(os.path.join(SRC, "packaging", "tokenwatch.json"))
    return files


def shipped_formats():
    return sorted(glob.glob(os.path.join(FORMATS_DIR, "*.json")))


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


class CheckAgreement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.config = schema_lite.load(CONFIG_SCHEMA)
        cls.format = schema_lite.load(FORMAT_SCHEMA)
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
    ("analyzer/config.c", "", "follow_keys"): (CONFIG_SCHEMA, "#/properties/follow"),
    ("analyzer/config.c", "", "input_keys"): (CONFIG_SCHEMA, "#/properties/inputs/items"),
    ("analyzer/format.c", "build_format", "keys"): (FORMAT_SCHEMA, "#"),
    ("analyzer/format.c", "read_matcher", "keys"): (FORMAT_SCHEMA, "#/$defs/matcher"),
    ("analyzer/format.c", "", "field_names"): (FORMAT_SCHEMA, "#/properties/fields"),
}
# String arrays that are not config keys.
NOT_KEYS = {
    ("analyzer/format.c", "", "perr_names"),   # metric label values
}
# Config object prefixes used in tw_jv_* calls -> schema location.
PREFIXES = {
    '""': "#", '"http"': "#/properties/http", '"follow"': "#/properties/follow",
    "p": "#/properties/inputs/items",   # load_inputs: p = "inputs[i]"
}


def resolve(schema, ref):
    node = schema
    for part in ref[1:].split("/")[1:]:
        node = node[part]
    return node


def eval_c_int(expr):
    expr = re.sub(r"(?<=\d)(?:ULL|LL|UL|U|L)\b", "", expr.strip())
    if not re.fullmatch(r"[\d\s<>()*+-]+", expr):
        return None
    return eval(expr)  # digits and operators only


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
        self.config = self.schemas[CONFIG_SCHEMA]

    def props(self, schema_file, ref):
        return set(resolve(self.schemas[schema_file], ref).get("properties", {}))

    def test_key_arrays_match_schema(self):
        found = set()
        for rel in ("analyzer/config.c", "analyzer/format.c"):
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
