#!/usr/bin/env python3
"""test_page_static.py — static checks of the analyst page (exporter/page/),
no browser needed (python3 stdlib only).

 - index.html has nothing the page's Content-Security-Policy (default-src
   'self') would block: no inline <script>, no <style> block, no style
   attribute, no on*= handler, no javascript: URL, nothing from another
   origin;
 - app.js never hands a string to an HTML or code parser: no innerHTML,
   outerHTML, insertAdjacentHTML, document.write, eval, new Function,
   string timers, setAttribute('style'|'on…'), no cookies, no fetch to
   another origin;
 - style.css loads nothing (no @import, no url() to another origin);
 - every element id app.js looks up with $('…') exists in index.html,
   exactly once (a typo would be a runtime error at 3 a.m.);
 - with $TW_BINARY_DIR: generated/page_assets.c embeds every page file
   byte for byte, at the right URL path and content type.

Each check names the file and line it objects to.
"""
import os
import re
import sys
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("TW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
PAGE_DIR = os.path.join(SOURCE_DIR, "exporter", "page")
BINARY_DIR = os.environ.get("TW_BINARY_DIR")

CTYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


def read(name):
    with open(os.path.join(PAGE_DIR, name), encoding="utf-8") as f:
        return f.read()


def strip_js_comments(src):
    """Blanks out // and /* */ comments (not inside strings or regexes of
    this file's simple kind), keeping line numbers."""
    out, i, n = [], 0, len(src)
    quote = None
    while i < n:
        c = src[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(src[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "'\"`":
            quote = c
            out.append(c)
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in src[i:j]))
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def findings(text, patterns):
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for pat, why in patterns:
            if re.search(pat, line):
                out.append("line %d: %s: %s" % (lineno, why, line.strip()))
    return out


class PageStatic(unittest.TestCase):
    maxDiff = None

    def test_files_present(self):
        names = sorted(n for n in os.listdir(PAGE_DIR) if not n.startswith("."))
        for need in ("index.html", "app.js", "style.css"):
            self.assertIn(need, names)
        for n in names:
            self.assertIn(os.path.splitext(n)[1], CTYPES, "%s: no content type for this extension" % n)

    def test_html_is_csp_clean(self):
        html = read("index.html")
        bad = findings(html, [
            (r"<script(?![^>]*\bsrc=\"/static/[^\"]+\")", "inline <script>"),
            (r"<style", "<style> block"),
            (r"\sstyle\s*=", "style attribute"),
            (r"\son[a-z]+\s*=", "event-handler attribute"),
            (r"javascript:", "javascript: URL"),
            (r"\b(src|href|action)\s*=\s*\"(https?:)?//", "another origin"),
        ])
        self.assertEqual(bad, [], "index.html")
        # Everything the page loads is one of its own files.
        for ref in re.findall(r"\b(?:src|href)=\"(/static/[^\"]+)\"", html):
            self.assertTrue(os.path.isfile(os.path.join(PAGE_DIR, ref[len("/static/"):])),
                            "index.html refers to %s, which is not in exporter/page/" % ref)

    def test_js_has_no_html_or_code_sinks(self):
        js = strip_js_comments(read("app.js"))
        bad = findings(js, [
            (r"\.innerHTML\b|\.outerHTML\b", "innerHTML/outerHTML"),
            (r"insertAdjacentHTML|createContextualFragment|DOMParser", "HTML parser"),
            (r"document\.write", "document.write"),
            (r"\beval\s*\(|new\s+Function\b", "eval/new Function"),
            (r"set(Timeout|Interval)\s*\(\s*['\"`]", "string timer"),
            (r"setAttribute\(\s*['\"](style|on[a-z]+|src|srcdoc|formaction)['\"]", "setAttribute of style/on*/src"),
            (r"document\.cookie", "cookies"),
            (r"fetch\(\s*['\"`]https?:", "fetch to another origin"),
            (r"\bimport\s*\(", "dynamic import"),
        ])
        self.assertEqual(bad, [], "app.js")
        # setAttribute('href', …) sets the token links, and only ever to
        # "#/token/…" as built by tokenHash().
        for m in re.finditer(r"setAttribute\('href', (\w+)\)", js):
            self.assertEqual(m.group(1), "href")
        self.assertIn("const href = tokenHash(", js)

    def test_css_loads_nothing(self):
        css = read("style.css")
        bad = findings(css, [(r"@import", "@import"), (r"url\(", "url()"), (r"expression\(", "expression()")])
        self.assertEqual(bad, [], "style.css")

    def test_js_ids_exist_in_html(self):
        js = strip_js_comments(read("app.js"))
        html = read("index.html")
        ids = set(re.findall(r"\$\('([A-Za-z0-9_-]+)'\)", js))
        self.assertGreater(len(ids), 30)
        missing, dup = [], []
        for i in sorted(ids):
            n = len(re.findall(r"\bid=\"%s\"" % re.escape(i), html))
            if n == 0:
                missing.append(i)
            elif n > 1:
                dup.append(i)
        self.assertEqual(missing, [], "ids used by app.js but missing in index.html")
        self.assertEqual(dup, [], "ids defined more than once in index.html")
        all_ids = re.findall(r"\bid=\"([^\"]+)\"", html)
        self.assertEqual(len(all_ids), len(set(all_ids)), "duplicate ids in index.html")

    @unittest.skipUnless(BINARY_DIR, "TW_BINARY_DIR not set (the embedded copy is checked under ctest)")
    def test_embedded_copy_matches(self):
        path = os.path.join(BINARY_DIR, "generated", "page_assets.c")
        self.assertTrue(os.path.isfile(path), "%s missing: is the build wired?" % path)
        with open(path, encoding="utf-8") as f:
            c = f.read()
        arrays = {}
        for m in re.finditer(r"static const unsigned char (asset_\d+)\[\] = \{([^}]*)\};", c):
            arrays[m.group(1)] = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", m.group(2)))
        table = re.findall(r"\{\"([^\"]+)\", \"([^\"]+)\", (asset_\d+), sizeof \3 - 1\}", c)
        names = sorted(n for n in os.listdir(PAGE_DIR) if not n.startswith("."))
        self.assertEqual(len(table), len(names), "embedded %d files, exporter/page/ has %d" % (len(table), len(names)))
        by_url = {url: (ctype, arrays[var]) for url, ctype, var in table}
        for n in names:
            url = "/" if n == "index.html" else "/static/" + n
            self.assertIn(url, by_url)
            ctype, data = by_url[url]
            self.assertEqual(ctype, CTYPES[os.path.splitext(n)[1]], n)
            self.assertEqual(data[-1:], b"\0", "%s: not NUL-terminated" % n)
            with open(os.path.join(PAGE_DIR, n), "rb") as f:
                self.assertEqual(data[:-1], f.read(), "%s: embedded copy differs (rebuild?)" % n)


if __name__ == "__main__":
    unittest.main(verbosity=2)
