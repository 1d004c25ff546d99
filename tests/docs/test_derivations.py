"""The derivation pages (docs/derivations/, "Backward passes, derived"): every public op in
`diynn.functional` has a section that links to its forward and its backward, and every page is in
the site's navigation. Fast: it reads the Markdown and mkdocs.yml, and builds nothing (the strict
build, tests/docs/test_docs.py, checks that the links resolve)."""

import re
from pathlib import Path

import pytest

import diynn.functional as F

ROOT = Path(__file__).resolve().parents[2]
DERIVATIONS = ROOT / "docs" / "derivations"
LINK = re.compile(r"\]\[diynn\.functional\.(\w+)\]")  # [`op`][diynn.functional.op]
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")

PUBLIC = list(F.__all__)
PAIRS = [name for name in PUBLIC if f"{name}_backward" in PUBLIC]  # forwards with a backward
OTHERS = [name for name in PUBLIC if name not in PAIRS and name.removesuffix("_backward") not in PAIRS]


def sections(text):
    """(heading, links) for each section of a page below its title (level 2 and deeper): a section
    runs to the next heading of its level or higher, so it holds its subsections' links too. Links
    and `#` lines inside code blocks do not count."""
    found, open_sections, fenced = [], [], False  # open_sections: [level, heading, links] outermost first
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = None if fenced else HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            while open_sections and open_sections[-1][0] >= level:
                found.append(tuple(open_sections.pop()[1:]))
            if level >= 2:
                open_sections.append([level, heading.group(2), set()])
            for section in open_sections:
                section[2].update(LINK.findall(line))
        elif not fenced:
            for section in open_sections:
                section[2].update(LINK.findall(line))
    found.extend(tuple(section[1:]) for section in reversed(open_sections))
    return found


def pages():
    """{page path relative to the repository: its sections} for every page in docs/derivations/."""
    return {
        page.relative_to(ROOT).as_posix(): sections(page.read_text(encoding="utf-8"))
        for page in sorted(DERIVATIONS.glob("*.md"))
    }


def link(name):
    return f"[`{name}`][diynn.functional.{name}]"


def where_to_add(name, found):
    """Where `name`'s section belongs: the page that derives the ops of its module, else a new page."""
    module = getattr(F, name).__module__
    family = {other for other in PUBLIC if getattr(F, other).__module__ == module}
    source = f"diynn/{module.removeprefix('diynn.').replace('.', '/')}.py"
    for page, page_sections in found.items():
        if any(links & family for _, links in page_sections):
            return f"{page}, where the ops of {source} are derived"
    return f"a page for {source} in docs/derivations/ (and in mkdocs.yml's nav, under 'Backward passes, derived')"


def split_over_sections(names, found):
    """' (...)' naming the sections that link each of `names` on a page that links them all, else ''."""
    for page, page_sections in found.items():
        where = {name: [heading for heading, links in page_sections if name in links] for name in names}
        if all(where.values()):
            places = ", ".join(f"{name} in {' / '.join(repr(h) for h in headings)}" for name, headings in where.items())
            return f" ({page} links them in different sections: {places}; one section must link both)"
    return ""


def test_every_forward_and_its_backward_have_a_section():
    found = pages()
    missing = []
    for name in PAIRS:
        both = {name, f"{name}_backward"}
        if not any(both <= links for page_sections in found.values() for _, links in page_sections):
            missing.append(
                f"diynn.functional.{name}: no section (a '## ...' heading) in docs/derivations/ links both "
                f"{link(name)} and {link(name + '_backward')}{split_over_sections(sorted(both), found)}; "
                f"add its derivation with both links to {where_to_add(name, found)}"
            )
    if missing:
        pytest.fail("\n".join(missing))


def test_every_other_public_name_has_a_section():
    found = pages()
    missing = [
        f"diynn.functional.{name}: no section (a '## ...' heading) in docs/derivations/ links "
        f"{link(name)}; add one to {where_to_add(name, found)}"
        for name in OTHERS
        if not any(name in links for page_sections in found.values() for _, links in page_sections)
    ]
    if missing:
        pytest.fail("\n".join(missing))


def test_the_links_name_public_ops():
    unknown = [
        f"{page}, section '{heading}': [diynn.functional.{name}] is not in diynn.functional.__all__"
        for page, page_sections in pages().items()
        for heading, links in page_sections
        for name in sorted(links - set(PUBLIC))
    ]
    if unknown:
        pytest.fail("\n".join(unknown))


def navigation_pages(entry):
    """Every page path named in a piece of mkdocs.yml's nav (a string, a list, or {title: entry})."""
    if isinstance(entry, str):
        return {entry}
    items = entry.values() if isinstance(entry, dict) else entry
    return set().union(*(navigation_pages(item) for item in items))


def test_every_derivation_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml", reason='reading mkdocs.yml needs PyYAML (pip install -e ".[test]")')

    class Loader(yaml.SafeLoader):
        """SafeLoader that reads the tags MkDocs configs use (!ENV, !!python/name:...) as None."""

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    listed = navigation_pages(config.get("nav") or [])
    missing = [
        f"docs/derivations/{page.name} is not in mkdocs.yml's nav: add it under 'Backward passes, derived'"
        for page in sorted(DERIVATIONS.glob("*.md"))
        if f"derivations/{page.name}" not in listed
    ]
    if missing:
        pytest.fail("\n".join(missing))


def test_the_section_reader():
    page = """# Title [`relu`][diynn.functional.relu]

## ReLU
[`relu`][diynn.functional.relu]
### Backward
[`relu_backward`][diynn.functional.relu_backward]
```python
# not a heading [`tanh`][diynn.functional.tanh]
```
## Tanh
## [`add`][diynn.functional.add] ##
"""
    assert sections(page) == [
        ("Backward", {"relu_backward"}),
        ("ReLU", {"relu", "relu_backward"}),
        ("Tanh", set()),
        ("[`add`][diynn.functional.add]", {"add"}),
    ]
