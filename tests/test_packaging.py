import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _parse(requirement: str) -> tuple[str, str]:
    name, _, bound = re.match(r"([A-Za-z0-9_.-]+)\s*(>=\s*([\w.]+))?", requirement).groups()
    return name.lower(), bound or ""


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = dict(_parse(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pip_side.update(_parse(r) for r in extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_side = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and not dep.startswith(("python", "pip")):
            name, bound = _parse(dep)
            conda_side[CONDA_NAMES.get(name, name)] = bound
    assert conda_side == pip_side


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "make demo" in readme


def test_constraints_pin_what_the_package_only_bounds():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounded = dict(_parse(r) for r in project["dependencies"])
    for name, version in pins.items():
        assert name in bounded and _v(version) >= _v(bounded[name])  # pins satisfy the bounds
