"""``make html``: execute lessons and render them to HTML that reads offline, formulas typeset.

nbconvert's pages load MathJax from a CDN, so without a network the formulas stay raw ``$...$``. Here the
pages load MathJax from a ``mathjax/`` folder next to them, copied from the ``jupyter-server-mathjax``
package (MathJax 2.7, the version nbconvert's template is written for; in the ``lab`` extra).

Run: ``python -m minitorch_attn.render --output-dir html notebooks/*.ipynb``.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import sys

#: The folder, next to the pages, that holds MathJax; and the page's script address relative to a page.
MATHJAX_DIR = "mathjax"
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def mathjax_source() -> pathlib.Path:
    """The MathJax files that ``jupyter-server-mathjax`` installs."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        raise SystemExit("make html needs MathJax from the lab extra: pip install -e '.[lab]' "
                         "(or `make lab`, which installs it)") from None
    return pathlib.Path(jupyter_server_mathjax.__file__).parent / "static"


def copy_mathjax(output_dir: pathlib.Path) -> pathlib.Path:
    """Copy MathJax into ``output_dir``/mathjax (once: a folder that is already there is kept)."""
    target = output_dir / MATHJAX_DIR
    if not (target / "MathJax.js").is_file():
        shutil.copytree(mathjax_source(), target, dirs_exist_ok=True)
    return target


#: A formula in a Markdown cell: $$...$$ or $...$ (inline, on one line); code spans are matched to be skipped.
_MATH = re.compile(r"(`[^`]*`)|(\$\$.+?\$\$|\$[^$\n]+\$)", re.S)


def primes_as_superscripts(markdown: str) -> str:
    """``F'`` and ``F''`` inside formulas written as ``F^{\\prime}`` and ``F^{\\prime\\prime}``: the same
    symbols, but the bundled MathJax 2.7 answers the apostrophe form with "Math Processing Error" (seen in
    a headless chromium on every lesson that writes CBAM's F'), and ``^\\prime`` typesets."""
    def formula(match):
        if match.group(1):
            return match.group(1)
        return re.sub(r"'+", lambda primes: "^{" + r"\prime" * len(primes.group()) + "}", match.group(2))
    return _MATH.sub(formula, markdown)


def render(notebook: pathlib.Path, output_dir: pathlib.Path, *, execute=True, timeout=1200) -> pathlib.Path:
    """Execute ``notebook`` (in its own folder, on the kernel it names) and write ``output_dir``/NAME.html."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    output_dir.mkdir(parents=True, exist_ok=True)
    copy_mathjax(output_dir)
    content = nbformat.read(notebook, as_version=4)
    if execute:
        ExecutePreprocessor(timeout=timeout).preprocess(content, {"metadata": {"path": str(notebook.parent)}})
    for cell in content.cells:  # the Markdown cells, and the Markdown that cells display (docstrings)
        if cell.cell_type == "markdown":
            cell.source = primes_as_superscripts(cell.source)
        for output in cell.get("outputs", []):
            if "text/markdown" in output.get("data", {}):
                output.data["text/markdown"] = primes_as_superscripts(output.data["text/markdown"])
    exporter = HTMLExporter(mathjax_url=MATHJAX_URL)
    body, _ = exporter.from_notebook_node(content)
    page = output_dir / f"{notebook.stem}.html"
    page.write_text(body, encoding="utf-8")
    return page


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make html", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=pathlib.Path)
    parser.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path("html"))
    args = parser.parse_args(argv)
    for notebook in args.notebooks:
        print(f"{notebook} -> {render(notebook, args.output_dir)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
