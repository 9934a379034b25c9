"""The set-up files agree with each other, and the README's commands are the ones CI runs."""

import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from vla_lessons import env

ROOT = env.REPO_ROOT


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_what_pyproject_declares():
    project = _pyproject()["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {p for p in pip_section if not p.startswith("--")}
    assert listed == declared, (
        f"environment.yml and pyproject.toml disagree: only in environment.yml {sorted(listed - declared)}, "
        f"only in pyproject.toml {sorted(declared - listed)}")
    assert "--editable ." in pip_section, "environment.yml must install the course package itself"


def test_environment_yml_python_is_allowed_by_pyproject():
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minor = tuple(int(x) for x in python.split("=")[1].split(".")[:2])
    assert (3, 11) <= minor < (3, 13), f"{python} is outside requires-python {_pyproject()['project']['requires-python']}"


def test_torch_is_pinned_everywhere():
    assert "torch==2.13.0" in _pyproject()["project"]["dependencies"]
    assert (ROOT / "constraints.txt").read_text().split() == ["torch==2.13.0"]
    import torch

    assert torch.__version__.startswith("2.13.0"), f"installed torch is {torch.__version__}, expected 2.13.0"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/course.sh" in readme
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert "bash scripts/test.sh" in commands, f".ci/run must call the README's test command, has {commands}"


def test_readme_lists_every_lesson():
    readme = (ROOT / "README.md").read_text()
    from vla_lessons import notebooks as nbt

    for nb in nbt.lesson_files(ROOT / "notebooks"):
        assert re.search(rf"\b{nb.stem}\b|notebooks/{re.escape(nb.name)}", readme), \
            f"README's lesson table misses {nb.name}"


@pytest.mark.parametrize("script", sorted((ROOT / "scripts" / "experiments").glob("*.py")), ids=lambda p: p.name)
def test_experiment_scripts_import_and_explain_themselves(script):
    """The README's experiment rows are re-run with these scripts: their imports must still resolve."""
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout and "positional arguments" in out.stdout
