"""The documentation site reads offline: no page loads a script, stylesheet, font or image from the
network (MathJax is served by the site itself, docs/hooks/offline.py), and the maths renders,
checked in headless Chromium on a page of derivations (arithmatex's \\( \\)) and a notebook ($ $)."""

import functools
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.slow  # builds the whole site (the fixture `site`, tests/docs/conftest.py)

REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http://, https://, //host
LOADING_LINKS = {"stylesheet", "preload", "modulepreload", "preconnect", "dns-prefetch", "prefetch", "icon", "manifest"}
LOADING_TAGS = {"script", "img", "iframe", "embed", "source", "audio", "video", "track"}  # their src loads
# What inline scripts and styles load: import("..."), import ... from "...", @import, url(...).
INLINE_LOAD = re.compile(
    r"""(?:\bimport\s*\(\s*|\bfrom\s+|@import\s+(?:url\(\s*)?|\burl\(\s*)["']?((?:[a-z]+:)?//[^"')\s]+)""", re.I
)


class Loads(HTMLParser):
    """The URLs a page loads, as written: script and media sources, stylesheets and other loading
    links, and the imports and url()s of its inline scripts, styles and style attributes."""

    def __init__(self):
        super().__init__()
        self.urls, self.inline = [], False

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        if tag in LOADING_TAGS and "src" in attrs:
            self.urls.append(attrs["src"])
        if tag == "link" and LOADING_LINKS & set(attrs.get("rel", "").lower().split()):
            self.urls.append(attrs.get("href", ""))
        self.urls += INLINE_LOAD.findall(attrs.get("style", ""))
        self.inline = tag in ("script", "style") and "src" not in attrs

    def handle_data(self, data):
        if self.inline:
            self.urls += INLINE_LOAD.findall(data)

    def handle_endtag(self, tag):
        self.inline = False


def remote_loads(html):
    parser = Loads()
    parser.feed(html)
    return [url for url in parser.urls if REMOTE.match(url)]


def test_no_page_loads_anything_from_the_network(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20, f"only {len(pages)} pages built"
    found = [
        f"{page.relative_to(site)}: {url}" for page in pages for url in remote_loads(page.read_text(encoding="utf-8"))
    ]
    assert not found, "pages that load from the network:\n" + "\n".join(found)


def test_the_scan_finds_what_a_cdn_would_serve():
    page = """<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">
    <script src="//cdn.example.org/mathjax.js"></script><script src="local.js"></script>
    <script type="module">const m = (await import("https://cdn.example.org/mermaid.mjs")).default;</script>
    <style>@font-face { src: url(https://fonts.gstatic.com/roboto.woff2) }</style>
    <a href="https://example.org/">a link loads nothing</a>"""
    assert remote_loads(page) == [
        "https://fonts.googleapis.com/css?family=Roboto",
        "//cdn.example.org/mathjax.js",
        "https://cdn.example.org/mermaid.mjs",
        "https://fonts.gstatic.com/roboto.woff2",
    ]


class Served:
    """The site on a loopback port, recording each request's path and status."""

    def __init__(self, folder):
        requests = self.requests = []

        class Handler(SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                requests.append((self.path, int(code)))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def rendered(url, profile):
    """The page's DOM once headless Chromium has run its scripts; any host but the loopback fails to
    resolve, as offline."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs headless Chromium (Debian's package chromium; .ci/run installs it)")
    command = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=20000",  # virtual milliseconds for the scripts: MathJax takes about 1 s
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "</html>" in result.stdout, result.stderr[-2000:]
    return result.stdout


UNRENDERED = re.compile(r"\\\(|\\\[|\$\$|\$[^$\s][^$]*\$")  # \( \[ $$ or $x$, left as text
NOT_TEXT = re.compile(r"<(script|style|pre|code)\b.*?</\1>", re.S)
TEX_ERROR = re.compile(r'<mjx-merror[^>]*data-mjx-error="([^"]*)"')  # e.g. a missing argument
UNDEFINED = re.compile(r'<mjx-mtext[^>]*style="color: red;">(.*?)</mjx-mtext>', re.S)  # an unknown \macro, in red
CHARACTER = re.compile(r'<mjx-c class="mjx-c([0-9A-F]+)\b')  # CommonHTML draws each character from its code


def undefined_macros(dom):
    return ["".join(chr(int(code, 16)) for code in CHARACTER.findall(text)) for text in UNDEFINED.findall(dom)]


@pytest.mark.parametrize("page", ["derivations/linear/", "notebooks/06_convolutional_networks/"])
def test_the_maths_renders_offline(site, tmp_path, page):
    formulas = (site / page / "index.html").read_text(encoding="utf-8").count('class="arithmatex"')  # 0 in notebooks
    with Served(site) as served:
        dom = rendered(served.url + page, tmp_path / "chromium")
    typeset = dom.count("<mjx-container")
    assert typeset >= max(formulas, 1), f"MathJax typeset {typeset} formulas on {page}, of {formulas} at least"
    errors = TEX_ERROR.findall(dom) + [f"undefined {macro}" for macro in undefined_macros(dom)]
    assert not errors, f"TeX errors on {page}: {errors}"
    left = UNRENDERED.findall(NOT_TEXT.sub("", dom))
    assert not left, f"maths left as text on {page}: {left[:10]}"
    failed = [(path, status) for path, status in served.requests if status >= 400]
    assert not failed, f"requests the site could not answer: {failed}"
    fonts = [path for path, _ in served.requests if path.startswith("/javascripts/mathjax/output/chtml/fonts/")]
    assert fonts, f"MathJax loaded no font from the site: {served.requests}"
