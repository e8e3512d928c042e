"""`make html`: the rendered course reads offline, with typeset formulas and its figures."""
import base64
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "01_global_pooling.ipynb"
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def _render(tmp_path, execute, notebook=LESSON):
    pytest.importorskip("nbconvert", reason="make html needs the lab extra (make lab installs it)")
    pytest.importorskip("jupyter_server_mathjax", reason="make html needs the lab extra (make lab installs it)")
    from minitorch_attn import render

    return render.render(notebook, tmp_path, execute=execute)


def test_pages_load_mathjax_from_the_folder_next_to_them(tmp_path):
    page = _render(tmp_path, execute=False)
    html = page.read_text(encoding="utf-8")
    scripts = re.findall(r'<script[^>]+src="([^"]*MathJax[^"]*)"', html)
    assert scripts == ["mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"], scripts
    assert (tmp_path / "mathjax" / "MathJax.js").is_file()
    assert (tmp_path / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()


def test_primes_in_formulas_become_superscripts():
    from minitorch_attn.render import primes_as_superscripts

    text = "$F' = M_c \\otimes F$, $$F'' = M_s(F') \\otimes F'$$ and `x = 'a'` and Woo et al.'s paper"
    assert primes_as_superscripts(text) == (
        "$F^{\\prime} = M_c \\otimes F$, $$F^{\\prime\\prime} = M_s(F^{\\prime}) \\otimes F^{\\prime}$$ "
        "and `x = 'a'` and Woo et al.'s paper")


@pytest.mark.slow
@pytest.mark.parametrize("lesson", [LESSON.name, "04_cbam_block.ipynb"])  # 04 writes F' and F'' throughout
def test_rendered_lesson_typesets_math_and_shows_figures_offline(tmp_path, lesson):
    if CHROMIUM is None:
        pytest.skip("needs a headless chromium (Debian: apt-get install chromium)")
    page = _render(tmp_path, execute=True, notebook=ROOT / "notebooks" / lesson)
    # No host resolves: whatever the page shows comes from files next to it.
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=30000", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=300)
    dom = done.stdout
    assert "<body" in dom, done.stderr[-2000:]
    sources = len(re.findall(r'<script type="math/tex', dom))      # MathJax 2 keeps each formula's TeX here
    typeset = len(re.findall(r'<span class="MathJax"', dom))        # ... and puts the typeset formula before it
    assert sources > 20 and typeset == sources, f"{typeset} of {sources} formulas typeset"
    assert "Math Processing Error" not in dom
    assert not re.search(r"\$\$?\\(?:frac|sum|mathbb)", dom), "raw $...$ TeX left in the page"
    figures = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', dom)
    assert len(figures) >= 2
    assert all(base64.b64decode(f)[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)


def test_make_html_runs_the_renderer():
    """The html target names the module this file tests (it once named one that did not exist)."""
    recipe = re.search(r"^html:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert re.search(r"-m minitorch_attn\.render\b", recipe), recipe
    dry = subprocess.run(["make", "-n", "-s", "html"], cwd=ROOT, capture_output=True, text=True)
    assert "-m minitorch_attn.render " in dry.stdout, dry.stdout + dry.stderr
