import os
import re
import subprocess
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / ".binder"  # repo2docker (Binder) reads this folder instead of the top level
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _parse(requirement: str) -> tuple[str, str]:
    name, _, bound = re.match(r"([A-Za-z0-9_.-]+)\s*(>=\s*([\w.]+))?", requirement).groups()
    return name.lower(), bound or ""


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda_side(env: dict) -> dict[str, str]:
    """PyPI name -> lower bound of an environment.yml's conda packages (python, pip aside)."""
    conda_side = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and not dep.startswith(("python", "pip")):
            name, bound = _parse(dep)
            conda_side[CONDA_NAMES.get(name, name)] = bound
    return conda_side


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = _project()
    pip_side = dict(_parse(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pip_side.update(_parse(r) for r in extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert _conda_side(env) == pip_side


def _is_local(requirement: str) -> bool:
    """A pip requirement that points into the repository (`-e .`, `./pkg`, `file:...`)."""
    target = re.sub(r"^(-e|--editable)(\s+|=)", "", requirement.strip())
    return target.startswith((".", "/", "file:"))


def test_binder_environment_has_the_runtime_dependencies_an_exact_python_and_no_local_install():
    project = _project()
    runtime = dict(_parse(r) for r in project["dependencies"])
    runtime.update(_parse(r) for r in project["optional-dependencies"]["notebooks"])
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    assert _conda_side(env) == runtime  # same names, same lower bounds
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    # repo2docker takes the Python version only from `python=X.Y` (or ==); `>=` is ignored
    pythons = [d for d in deps if _parse(d)[0] == "python"]
    assert len(pythons) == 1
    exact = re.fullmatch(r"python\s*==?\s*(\d+\.\d+)(\.\d+)?", pythons[0])
    assert exact, pythons[0]
    assert _v(exact.group(1)) >= _v(project["requires-python"])
    # the CPU builds of conda-forge's pytorch and torchvision (build strings cpu_...)
    for name in ("pytorch", "torchvision"):
        (spec,) = [d.split() for d in deps if _parse(d)[0] == name]
        assert len(spec) == 3 and spec[2].startswith("cpu"), spec
    # the environment is installed before the repository is copied in: no `-e .` here
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert not any(_is_local(r) for r in dep.get("pip", [])), dep
    assert not (ROOT / "binder").exists()  # repo2docker refuses binder/ next to .binder/


def test_binder_postbuild_installs_the_package_and_fetches_the_weights():
    post = BINDER / "postBuild"
    assert post.is_file() and os.access(post, os.X_OK)
    text = post.read_text()
    assert text.startswith("#!/bin/bash\n")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "set -euo pipefail"
    install = "python -m pip install --no-deps -e ."  # run from the repository root
    fetch = "python -m nst_lib --fetch-weights"
    assert install in lines and fetch in lines
    assert lines.index(install) < lines.index(fetch)
    subprocess.run(["bash", "-n", str(post)], check=True)  # it parses


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
