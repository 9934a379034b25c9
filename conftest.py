"""Root pytest configuration: notebook wall-time budgets and stderr left out of nbval's comparison.

* Every notebook collected by nbval gets one more test, ``wall-time budget``, placed after its last
  cell: it fails when the notebook took longer than its budget (default 3 minutes in the default
  fast mode; ``VLA_FULL=1`` turns the check off). A notebook may set its own budget in its
  metadata: ``{"vla": {"budget_s": 120}}``.
* At the end of the run a table of per-notebook wall times is printed.
* nbval compares stderr streams by default; progress bars and library warnings go to stderr and
  are not part of what a lesson teaches, so they are dropped from both sides of the comparison.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

DEFAULT_BUDGET_S = 180.0
_notebook_seconds: dict[str, float] = defaultdict(float)

try:
    import nbval.plugin as _nbval_plugin
except ImportError:  # nbval missing: ordinary tests still run
    _nbval_plugin = None

if _nbval_plugin is not None:
    _original_compare = _nbval_plugin.IPyNbCell.compare_outputs

    def _without_stderr(outputs):
        return [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]

    def _compare_outputs(self, test, ref, skip_compare=None):
        return _original_compare(self, _without_stderr(test), _without_stderr(ref), skip_compare)

    _nbval_plugin.IPyNbCell.compare_outputs = _compare_outputs


def _full_mode() -> bool:
    return os.environ.get("VLA_FULL", "0").strip().lower() in ("1", "true", "yes")


def _budget_of(path: Path) -> float:
    meta = json.loads(path.read_text()).get("metadata", {})
    return float(meta.get("vla", {}).get("budget_s", DEFAULT_BUDGET_S))


class NotebookBudget(pytest.Item):
    """Fails when the notebook's cells together took longer than its budget."""

    def __init__(self, *, notebook: str, budget_s: float, **kwargs):
        super().__init__(**kwargs)
        self.notebook, self.budget_s = notebook, budget_s

    def runtest(self):
        if _full_mode():
            pytest.skip("budgets apply to the default fast mode only")
        took = _notebook_seconds.get(self.notebook, 0.0)
        if took > self.budget_s:
            raise AssertionError(
                f"{self.notebook} took {took:.1f} s, over its budget of {self.budget_s:.1f} s: "
                "make the default (fast) mode lighter, or move work into the build script")

    def repr_failure(self, excinfo):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, f"{self.notebook}::wall-time budget"


def _notebook_of(nodeid: str) -> str | None:
    head = nodeid.split("::", 1)[0]
    return head if head.endswith(".ipynb") else None


def pytest_collection_modifyitems(session, config, items):
    if _nbval_plugin is None:
        return
    out, i = [], 0
    while i < len(items):
        item = items[i]
        out.append(item)
        parent = item.parent
        is_last_of_notebook = isinstance(parent, _nbval_plugin.IPyNbFile) and (
            i + 1 == len(items) or items[i + 1].parent is not parent)
        if is_last_of_notebook:
            notebook = _notebook_of(item.nodeid)
            out.append(NotebookBudget.from_parent(
                parent, name="wall-time budget", notebook=notebook, budget_s=_budget_of(parent.path)))
        i += 1
    items[:] = out


def pytest_runtest_logreport(report):
    notebook = _notebook_of(report.nodeid)
    if notebook and report.when in ("setup", "call") and not report.nodeid.endswith("wall-time budget"):
        _notebook_seconds[notebook] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    tr = terminalreporter
    tr.section("notebook wall time")
    for name, seconds in sorted(_notebook_seconds.items()):
        tr.write_line(f"{name:<44}{seconds:>8.1f} s")
    tr.write_line(f"{'total':<44}{sum(_notebook_seconds.values()):>8.1f} s")
