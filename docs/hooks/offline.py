"""MkDocs hook: the site loads no script or stylesheet from the network, so that it reads offline.

MathJax 3 comes from the django-static-mathjax wheel (MathJax 3.2.2's browser bundle with its
fonts; the docs extra installs it) and is served from the site under javascripts/mathjax/. The
notebook pages lose nbconvert's loaders for MathJax 2 and Mermaid, whose URLs point at a CDN: the
site's MathJax typesets the notebooks' `$...$` too, and no notebook has a Mermaid diagram.
"""

import importlib.util
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

SITE_FOLDER = "javascripts/mathjax"
# The CommonHTML bundle mkdocs.yml loads, and what it loads on demand, all under its own folder:
# TeX extensions (autoload), MathML entities, the fonts, the menu, accessibility and speech.
BUNDLE = "tex-mml-chtml.js"
ON_DEMAND = ("input/tex/extensions", "input/mml", "output/chtml", "ui", "a11y", "sre")

# nbconvert's HTML template (base/mathjax.html.j2, lab/mermaidjs.html.j2): a MathJax 2 loader and its
# configuration, between two comments, and a module script that imports Mermaid from a CDN.
NBCONVERT_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL)
NBCONVERT_MERMAID = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?jp-Mermaid.*?</script>", re.DOTALL)


def mathjax_folder() -> Path:
    """The folder es5/ of the installed MathJax (the module `mathjax` of django-static-mathjax)."""
    spec = importlib.util.find_spec("mathjax")
    folder = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if folder is None or not (folder / BUNDLE).is_file():
        raise PluginError(
            f"MathJax 3 not found (expected {BUNDLE} in the package django-static-mathjax, found "
            f"{folder or 'no module mathjax'}): pip install -e '.[docs]'"
        )
    return folder


def on_files(files, config):
    folder = mathjax_folder()
    sources = [folder / BUNDLE] + [path for part in ON_DEMAND for path in sorted((folder / part).rglob("*"))]
    for path in sources:
        if path.is_file():
            uri = f"{SITE_FOLDER}/{path.relative_to(folder).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_content(html, page, config, files):
    if page.file.src_uri.endswith(".ipynb"):
        html = NBCONVERT_MERMAID.sub("", NBCONVERT_MATHJAX.sub("", html))
    return html
