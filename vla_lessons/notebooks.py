"""Notebook hygiene for the course: cleaning, exercises from solutions, listing lessons.

Used by ``scripts/nb.py`` and the tests; a learner rarely needs it.

* **Cleaning** keeps outputs (nbval compares them) but strips what changes from run to run:
  kernel/language versions, cell timing metadata, widget state, stderr streams (progress bars,
  library warnings), random cell ids. Execution counts are renumbered 1, 2, 3… rather than
  removed: nbval only compares the outputs of cells that carry an execution count.
* **Exercises** are made from ``solutions/NN_*.ipynb``: the code between ``# BEGIN SOLUTION`` and
  ``# END SOLUTION`` becomes ``raise NotImplementedError(...)`` (never a syntax error), markdown
  between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` becomes a prompt to answer,
  check cells stay, and every output is cleared.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat

NB_VERSION = 4
NB_MINOR = 5

#: Cell metadata keys that carry meaning and survive cleaning.
KEEP_CELL_METADATA = ("tags",)
#: Notebook metadata the course uses (``{"vla": {"budget_s": 120}}`` sets a wall-time budget).
KEEP_NOTEBOOK_METADATA = ("vla",)

SOLUTION_BEGIN = "# BEGIN SOLUTION"
SOLUTION_END = "# END SOLUTION"
MD_SOLUTION_BEGIN = "<!-- BEGIN SOLUTION -->"
MD_SOLUTION_END = "<!-- END SOLUTION -->"
EXERCISE_PLACEHOLDER = 'raise NotImplementedError("Exercise: write your code here")'
MD_PLACEHOLDER = "*Your answer here.*"

_LESSON_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")


def read(path: str | Path) -> nbformat.NotebookNode:
    """Read a notebook, with a clear error naming the file if it is not valid JSON."""
    path = Path(path)
    try:
        return nbformat.read(path, as_version=NB_VERSION)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as exc:
        raise ValueError(f"{path} is not a valid notebook: {exc}") from exc


def dumps(nb: nbformat.NotebookNode) -> str:
    """Serialise a notebook the one way the repository stores it (1-space indent, trailing newline)."""
    return nbformat.writes(nb, version=NB_VERSION) + "\n"


def _is_stderr(output) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stderr"


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a cleaned copy of ``nb`` (outputs kept, volatile metadata stripped)."""
    nb = copy.deepcopy(nb)
    nb.nbformat, nb.nbformat_minor = NB_VERSION, NB_MINOR
    kept = {k: nb.metadata[k] for k in KEEP_NOTEBOOK_METADATA if k in nb.metadata}
    nb.metadata = nbformat.NotebookNode(
        kernelspec={"display_name": "Python 3", "language": "python", "name": "python3"},
        language_info={"name": "python"},
        **kept,
    )
    count = 0
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:03d}"
        cell.metadata = nbformat.NotebookNode(
            {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA}
        )
        if isinstance(cell.source, list):
            cell.source = "".join(cell.source)
        if "attachments" in cell and not cell.attachments:
            del cell["attachments"]
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            if _is_stderr(out):
                continue
            if out.get("output_type") in ("display_data", "execute_result"):
                out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
                if out.get("output_type") == "execute_result":
                    out.execution_count = None  # set below with the cell's count
            outputs.append(out)
        cell.outputs = outputs
        if cell.execution_count is None and not outputs:
            continue  # never run: leave it unrun (nbval then runs it without comparing)
        count += 1
        cell.execution_count = count
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out.execution_count = count
    return nb


def is_clean(path: str | Path) -> bool:
    """True when the file on disk is exactly what :func:`clean` would write."""
    path = Path(path)
    return path.read_text() == dumps(clean(read(path)))


def clean_file(path: str | Path) -> bool:
    """Clean a notebook in place; return True when the file changed."""
    path = Path(path)
    new = dumps(clean(read(path)))
    if path.read_text() == new:
        return False
    path.write_text(new)
    return True


def _strip_code(source: str, where: str) -> str:
    lines = source.split("\n")
    out, inside, indent = [], False, ""
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped == SOLUTION_BEGIN:
            if inside:
                raise ValueError(f"{where}: nested '{SOLUTION_BEGIN}' at line {n}")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{EXERCISE_PLACEHOLDER}")
        elif stripped == SOLUTION_END:
            if not inside:
                raise ValueError(f"{where}: '{SOLUTION_END}' without a '{SOLUTION_BEGIN}' at line {n}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{SOLUTION_BEGIN}' is never closed by '{SOLUTION_END}'")
    return "\n".join(out)


def _strip_markdown(source: str, where: str) -> str:
    pattern = re.compile(re.escape(MD_SOLUTION_BEGIN) + r".*?" + re.escape(MD_SOLUTION_END), re.S)
    new = pattern.sub(MD_PLACEHOLDER, source)
    if MD_SOLUTION_BEGIN in new or MD_SOLUTION_END in new:
        raise ValueError(f"{where}: unbalanced solution markers in a markdown cell")
    return new


def make_exercise(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """Turn a solution notebook into its exercise twin (regions replaced, all outputs cleared)."""
    nb = clean(solution)
    n_regions = 0
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        if cell.cell_type == "code":
            n_regions += cell.source.count(SOLUTION_BEGIN)
            cell.source = _strip_code(cell.source, where)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            n_regions += cell.source.count(MD_SOLUTION_BEGIN)
            cell.source = _strip_markdown(cell.source, where)
    if n_regions == 0:
        raise ValueError(f"{name} has no '{SOLUTION_BEGIN}' region: nothing for a learner to do")
    return nb


def lesson_files(folder: str | Path) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks of a folder, in lesson order."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("*.ipynb") if _LESSON_NAME.match(p.name))




#: The folders that hold notebooks: lessons, exercise solutions, and the generated exercises.
FOLDERS = ("notebooks", "solutions", "exercises")


def all_notebooks(root: str | Path) -> list[Path]:
    """Every lesson-numbered notebook under ``root``'s notebook folders."""
    root = Path(root)
    return [p for f in FOLDERS for p in lesson_files(root / f)]


def expected_exercises(root: str | Path) -> dict[str, str]:
    """The text each ``exercises/NN_*.ipynb`` must have, made from ``solutions/``."""
    root = Path(root)
    return {
        sol.name: dumps(make_exercise(read(sol), name=f"solutions/{sol.name}"))
        for sol in lesson_files(root / "solutions")
    }


def write_exercises(root: str | Path) -> list[Path]:
    """Write every exercise notebook that differs from its solution's; return those written."""
    root = Path(root)
    written = []
    for name, text in expected_exercises(root).items():
        target = root / "exercises" / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            written.append(target)
    return written


def check(root: str | Path) -> list[str]:
    """Problems a commit must not have: unclean notebooks, exercises out of sync with solutions."""
    root = Path(root)
    problems = [
        f"{p.relative_to(root)} is not clean: run python scripts/nb.py clean"
        for p in all_notebooks(root) if not is_clean(p)
    ]
    expected = expected_exercises(root)
    present = {p.name for p in lesson_files(root / "exercises")}
    for name in sorted(present - expected.keys()):
        problems.append(f"exercises/{name} has no solutions/{name}")
    for name, text in sorted(expected.items()):
        target = root / "exercises" / name
        if not target.exists():
            problems.append(f"exercises/{name} is missing: run python scripts/nb.py exercises")
        elif target.read_text() != text:
            problems.append(f"exercises/{name} is out of sync with solutions/{name}: "
                            "run python scripts/nb.py exercises")
    return problems


def execute(nb: nbformat.NotebookNode, cwd: str | Path, timeout: int = 900) -> float:
    """Execute ``nb`` in place with a fresh kernel started in ``cwd``; return the wall time in s.

    The kernel is this interpreter's own (``python3`` resolves to the running environment).
    """
    import time

    from nbclient import NotebookClient

    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return time.perf_counter() - start
