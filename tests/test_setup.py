"""The set-up files agree with each other."""
import json
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in ("test", "lab"):
        requirements += project["optional-dependencies"][extra]
    return {re.split(r"[=<>\[]", r)[0].lower(): r.lower() for r in requirements}


def _environment_pins():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    pins = [line.strip()[2:].strip() for line in lines if line.strip().startswith("- ") and "==" in line]
    return {re.split(r"[=<>\[]", p)[0].lower(): p.lower() for p in pins}


def test_environment_yml_pins_match_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_torch_is_pinned_exactly():
    # Any other torch pulls a multi-GB CUDA build (see README).
    assert _pyproject_pins()["torch"] == "torch==2.13.0"


def test_every_dependency_is_pinned_exactly():
    loose = [r for r in _pyproject_pins().values() if "==" not in r]
    assert not loose, f"unpinned requirements: {loose}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme


def test_notebooks_ask_for_the_kernel_that_make_registers_inside_the_venv():
    makefile = (ROOT / "Makefile").read_text()
    kernel = re.search(r"^KERNEL\s*\?=\s*(\S+)", makefile, re.M).group(1)
    installs = re.findall(r"ipykernel install ([^\n]*)", makefile)
    # inside .venv only: a user-wide kernel of the same name would be re-pointed by another checkout
    assert installs and all("--sys-prefix" in line and "--user" not in line for line in installs)
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        spec = json.loads(notebook.read_text())["metadata"]["kernelspec"]
        assert spec["name"] == kernel, f"{notebook.name} asks for kernel {spec['name']!r}, make registers {kernel!r}"


def test_spdx_license_string_has_a_setuptools_that_reads_it():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(pyproject["project"]["license"], str)   # a table is deprecated in setuptools >= 77
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
