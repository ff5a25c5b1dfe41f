"""schema_lite.py — a small JSON Schema (draft 2020-12) validator, stdlib only.

Debian's python3-jsonschema is not part of the build or test dependencies, so
the schema tests use this instead. It implements exactly the subset that
rules/*.schema.json use and refuses any other keyword (SchemaError), so a
schema can never rely on a keyword that is silently ignored here:

  type, enum, const, properties, required, additionalProperties, items,
  minItems, maxItems, minLength, maxLength, pattern, minimum, maximum,
  anyOf, oneOf, allOf, not, if/then/else, $ref (local "#/..." only)

plus the annotations $schema, $id, $defs, $comment, title, description,
default, examples, deprecated.

Errors are (path, message) pairs. Paths use tokenwatch's own notation
("inputs[1].format", "http.listen", "" for the document), so they can be
compared with `tokenwatch check` messages. A missing required key is
reported at the key's path, as tokenwatch does.
"""

import math
import re

ANNOTATIONS = {"$schema", "$id", "$defs", "$comment", "title", "description",
               "default", "examples", "deprecated"}
ASSERTIONS = {"type", "enum", "const", "properties", "required",
              "additionalProperties", "items", "minItems", "maxItems",
              "minLength", "maxLength", "pattern", "minimum", "maximum",
              "anyOf", "oneOf", "allOf", "not", "if", "then", "else", "$ref"}


class SchemaError(Exception):
    """The schema itself uses something this validator does not implement."""


def join(path, key):
    return f"{path}.{key}" if path else key


def index(path, i):
    return f"{path}[{i}]"


def _is_type(v, t):
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "null":
        return v is None
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "integer":
        # 2020-12: any number with a zero fractional part is an integer.
        if isinstance(v, bool):
            return False
        return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v)
                                      and v.is_integer())
    raise SchemaError(f"unknown type {t!r}")


def _equal(a, b):
    # JSON equality: 1 == 1.0, but true != 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _closest(branches):
    """The failed branch that got furthest: its errors lie deepest in the
    value (a type mismatch at the top means the branch did not apply)."""
    return min(branches, key=lambda errs: (-max(len(p) for p, _ in errs), len(errs)))


class Validator:
    def __init__(self, schema):
        self.root = schema
        self._check_schema(schema, "#")

    def _check_schema(self, s, where):
        if isinstance(s, bool):
            return
        if not isinstance(s, dict):
            raise SchemaError(f"{where}: a schema must be an object or a boolean")
        for k, v in s.items():
            if k not in ANNOTATIONS and k not in ASSERTIONS:
                raise SchemaError(f"{where}: keyword {k!r} is not supported by schema_lite")
            if k in ("properties", "$defs"):
                for name, sub in v.items():
                    self._check_schema(sub, f"{where}/{k}/{name}")
            elif k in ("items", "additionalProperties", "not", "if", "then", "else"):
                self._check_schema(v, f"{where}/{k}")
            elif k in ("anyOf", "oneOf", "allOf"):
                for i, sub in enumerate(v):
                    self._check_schema(sub, f"{where}/{k}/{i}")
            elif k == "$ref":
                self._resolve(v)
            elif k == "pattern":
                re.compile(v)

    def _resolve(self, ref):
        if not ref.startswith("#"):
            raise SchemaError(f"only local $ref are supported, got {ref!r}")
        node = self.root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise SchemaError(f"$ref {ref!r} does not resolve")
            node = node[part]
        return node

    def errors(self, instance):
        """All errors as a list of (path, message); empty if valid."""
        out = []
        self._validate(instance, self.root, "", out)
        return out

    def _validate(self, v, s, path, out):
        if s is True:
            return
        if s is False:
            out.append((path, "no value is allowed here"))
            return
        if "$ref" in s:
            self._validate(v, self._resolve(s["$ref"]), path, out)
        if "type" in s:
            types = s["type"] if isinstance(s["type"], list) else [s["type"]]
            if not any(_is_type(v, t) for t in types):
                out.append((path, f"expected {' or '.join(types)}, got {type(v).__name__}"))
                return
        if "enum" in s and not any(_equal(v, e) for e in s["enum"]):
            out.append((path, f"expected one of {s['enum']}, got {v!r}"))
        if "const" in s and not _equal(v, s["const"]):
            out.append((path, f"expected {s['const']!r}, got {v!r}"))
        if isinstance(v, str):
            if "minLength" in s and len(v) < s["minLength"]:
                out.append((path, f"expected at least {s['minLength']} characters"))
            if "maxLength" in s and len(v) > s["maxLength"]:
                out.append((path, f"expected at most {s['maxLength']} characters"))
            if "pattern" in s and not re.search(s["pattern"], v):
                out.append((path, f"expected to match {s['pattern']}, got {v!r}"))
        if _is_type(v, "number"):
            if "minimum" in s and v < s["minimum"]:
                out.append((path, f"expected >= {s['minimum']}, got {v}"))
            if "maximum" in s and v > s["maximum"]:
                out.append((path, f"expected <= {s['maximum']}, got {v}"))
        if isinstance(v, list):
            if "minItems" in s and len(v) < s["minItems"]:
                out.append((path, f"expected at least {s['minItems']} items"))
            if "maxItems" in s and len(v) > s["maxItems"]:
                out.append((path, f"expected at most {s['maxItems']} items"))
            if "items" in s:
                for i, item in enumerate(v):
                    self._validate(item, s["items"], index(path, i), out)
        if isinstance(v, dict):
            props = s.get("properties", {})
            for k in s.get("required", []):
                if k not in v:
                    out.append((join(path, k), "required key is missing"))
            for k, item in v.items():
                if k in props:
                    self._validate(item, props[k], join(path, k), out)
                elif "additionalProperties" in s:
                    ap = s["additionalProperties"]
                    if ap is False:
                        out.append((join(path, k),
                                    f"unknown key (expected one of: {', '.join(props)})"))
                    else:
                        self._validate(item, ap, join(path, k), out)
        for sub in s.get("allOf", []):
            self._validate(v, sub, path, out)
        if "anyOf" in s:
            branches = [self._try(v, sub, path) for sub in s["anyOf"]]
            if all(branches):
                # The value as a whole fails; the closest branch says why.
                out.append((path, "matches none of the alternatives (anyOf)"))
                out.extend(_closest(branches))
        if "oneOf" in s:
            branches = [self._try(v, sub, path) for sub in s["oneOf"]]
            ok = sum(1 for b in branches if not b)
            if ok == 0:
                out.append((path, "matches none of the alternatives (oneOf)"))
                out.extend(_closest(branches))
            elif ok > 1:
                out.append((path, "expected exactly one alternative to match"))
        if "not" in s and not self._try(v, s["not"], path):
            n = s["not"]
            if isinstance(n, dict) and n.keys() == {"required"} and len(n["required"]) == 1:
                # The usual idiom for "key not allowed here": point at the key.
                out.append((join(path, n["required"][0]), "key is not allowed here"))
            else:
                out.append((path, "matches a schema it must not match"))
        if "if" in s:
            if not self._try(v, s["if"], path):
                if "then" in s:
                    self._validate(v, s["then"], path, out)
            elif "else" in s:
                self._validate(v, s["else"], path, out)

    def _try(self, v, s, path):
        out = []
        self._validate(v, s, path, out)
        return out


def load(path):
    import json
    with open(path, encoding="utf-8") as f:
        return Validator(json.load(f))
