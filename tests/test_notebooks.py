"""Notebook hygiene: committed notebooks are clean, exercises match their solutions and run."""

import ast

import nbformat
import pytest

from vla_lessons import env, notebooks as nbt

ROOT = env.REPO_ROOT


def test_committed_notebooks_are_clean_and_exercises_in_sync():
    problems = nbt.check(ROOT)
    assert not problems, "\n".join(problems)


def test_every_lesson_has_an_exercise_pair():
    lessons = {p.name[:2] for p in nbt.lesson_files(ROOT / "notebooks")}
    solutions = {p.name[:2] for p in nbt.lesson_files(ROOT / "solutions")}
    assert lessons, "no lesson notebooks found"
    assert lessons == solutions, f"lessons without solutions: {sorted(lessons - solutions)}"


@pytest.mark.parametrize("path", nbt.lesson_files(ROOT / "exercises"), ids=lambda p: p.name)
def test_exercise_cells_are_valid_python(path):
    nb = nbt.read(path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            source = "\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!")))
            ast.parse(source, filename=f"{path.name} cell {i}")
        assert not cell.get("outputs"), f"{path.name} cell {i} keeps outputs"


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def test_exercise_regions_become_not_implemented():
    code = "def f(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\n\nassert f(2) == 4"
    md = "Why?\n<!-- BEGIN SOLUTION -->Because.<!-- END SOLUTION -->"
    ex = nbt.make_exercise(_nb(nbformat.v4.new_code_cell(code), nbformat.v4.new_markdown_cell(md)))
    assert ex.cells[0].source == ('def f(x):\n    raise NotImplementedError("Exercise: write your code here")'
                                  '\n\nassert f(2) == 4')
    assert ex.cells[1].source == "Why?\n*Your answer here.*"
    namespace = {}
    exec(compile(ex.cells[0].source.split("\n\n")[0], "ex", "exec"), namespace)
    with pytest.raises(NotImplementedError):
        namespace["f"](1)


@pytest.mark.parametrize("source, message", [
    ("# BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n# END SOLUTION", "without a"),
    ("x = 1", "nothing for a learner to do"),
])
def test_malformed_solution_markers_are_errors(source, message):
    with pytest.raises(ValueError, match=message):
        nbt.make_exercise(_nb(nbformat.v4.new_code_cell(source)))


def test_clean_strips_volatile_metadata_and_stderr_and_renumbers():
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=17)
    cell.metadata = {"execution": {"iopub.execute_input": "2026-01-01"}, "tags": ["keep"]}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="progress 10%\n")]
    nb = _nb(cell)
    nb.metadata = {"widgets": {"state": {}}, "language_info": {"version": "3.11.7"}}
    out = nbt.clean(nb)
    c = out.cells[0]
    assert c.execution_count == 1 and c.metadata == {"tags": ["keep"]} and c.id == "c000"
    assert [o.name for o in c.outputs] == ["stdout"]
    assert "widgets" not in out.metadata and out.metadata.language_info == {"name": "python"}
    assert nbt.dumps(nbt.clean(out)) == nbt.dumps(out), "cleaning must be idempotent"
