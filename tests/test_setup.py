"""The set-up files agree with each other."""
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
