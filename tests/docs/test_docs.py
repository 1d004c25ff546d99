"""The documentation site (mkdocs.yml, docs/): `mkdocs build --strict` fails on a broken link, a
missing page or notebook, or an API reference that no longer resolves (the build is the fixture
`site`, tests/docs/conftest.py). The API reference shows every public name, with its signature."""

import re
from pathlib import Path

import pytest

import diynn
import diynn.datasets
import diynn.functional
from diynn import backends

pytestmark = pytest.mark.slow  # builds the whole site

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"

ENTRY = re.compile(r"^::: *(\S+)(\n(?: {4}.*\n?)*)?", re.MULTILINE)  # `::: name` and its indented options
HEADING = re.compile(r'<h(\d) id="([^"]+)" class="doc doc-heading">.*?</h\1>(.*?)<div class="doc doc-contents', re.S)
OBJECT = re.compile(r'<div class="doc doc-object doc-(\w+)">')  # the heading's object: class, function, module...
ANCHOR = re.compile(r' id="([^"]+)"')


def test_the_site_builds_strictly(site):
    for page in ("index.html", "concepts/modules/index.html", "api/diynn/index.html", "api/layers/index.html"):
        assert (site / page).is_file(), page
    notebook = (site / "notebooks" / "06_convolutional_networks" / "index.html").read_text()
    assert "col2im" in notebook and "data:image/png;base64" in notebook  # the maths and a figure
    layers = (site / "api" / "layers" / "index.html").read_text()
    assert 'id="diynn.Linear"' in layers  # the reference lists the exports
    assert 'id="diynn.NTXentLoss"' in (site / "api" / "losses" / "index.html").read_text()


def api_pages():
    """{page name: its `::: name` entries that render a heading} for each page in docs/api/."""
    pages = {}
    for page in sorted(API.glob("*.md")):
        entries = ENTRY.findall(page.read_text(encoding="utf-8"))
        pages[page.stem] = [name for name, options in entries if "show_root_heading: false" not in options]
    return pages


def built(site, page):
    return (site / "api" / page / "index.html").read_text(encoding="utf-8")


def objects(html):
    """{id: (kind, the HTML between the heading and the object's contents)} for each object on a page."""
    found = {}
    for heading in HEADING.finditer(html):
        kind = OBJECT.match(html, html.rfind('<div class="doc doc-object', 0, heading.start()))
        found[heading.group(2)] = (kind.group(1) if kind else "unknown", heading.group(3))
    return found


def test_every_api_entry_shows_its_signature(site):
    missing, unsigned = [], []
    for page, entries in api_pages().items():
        rendered = objects(built(site, page))
        missing += [f"api/{page}.md: {name}" for name in entries if name not in rendered]
        unsigned += [
            f"api/{page}.md: {name} ({kind})"
            for name, (kind, between) in rendered.items()
            if kind != "module" and "doc-signature" not in between
        ]
    assert not missing, "`:::` entries with no heading on their built page:\n" + "\n".join(missing)
    assert not unsigned, "objects rendered without a signature:\n" + "\n".join(unsigned)


@pytest.mark.parametrize(
    "module, prefixes",
    [
        (diynn, ("diynn.", "backends.")),  # diynn's backend functions are documented where they live
        (diynn.functional, ("diynn.functional.",)),
        (diynn.datasets, ("diynn.datasets.",)),
        (backends, ("backends.",)),  # the reference reads backends/ as `backends`
    ],
    ids=["diynn", "diynn.functional", "diynn.datasets", "diynn.backends"],
)
def test_every_public_name_is_in_the_api_reference(site, module, prefixes):
    anchors = {anchor for page in api_pages() for anchor in ANCHOR.findall(built(site, page))}
    absent = []
    for name in module.__all__:
        defined_in = getattr(getattr(module, name), "__module__", None)  # e.g. diynn.gradcheck.gradcheck
        places = {prefix + name for prefix in prefixes} | {f"{defined_in}.{name}"}
        if not places & anchors:
            absent.append(name)
    assert not absent, f"in {module.__name__}.__all__ but on no page of docs/api/: {', '.join(absent)}"
