"""A task that spans several files names each (file, symbol); every consumer uses all of
them: where `e` opens, what `reset` restores, the coach's view of the learner's code, the
files-changed record. (The lesson's Edit line and the session doc: test_tui_units.py and
test_records_sessions.py.)"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tutor.curriculum import load_course
from tutor.workspace import edit_target, init_workspace, reset_day, reset_plan


@pytest.fixture(scope="module")
def course():
    return load_course()


@pytest.fixture
def ws(tmp_path) -> Path:
    init_workspace(tmp_path / "ws")
    return tmp_path / "ws"


def _def_line(path: Path, prefix: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.startswith(prefix))


def _replace_def(path: Path, name: str, body: str) -> None:
    """Give top-level ``name`` in ``path`` a new body (the learner's work)."""
    import ast

    src = path.read_text()
    node = next(n for n in ast.parse(src).body if getattr(n, "name", None) == name)
    lines = src.splitlines(keepends=True)
    lines[node.lineno - 1:node.end_lineno] = [body]
    path.write_text("".join(lines))


# --------------------------------------------------------------------------- e


def test_e_opens_the_first_unwritten_piece_of_a_task(ws, course):
    task = course.lesson("1.1").task(2)  # linear in basics.py, the class in attention.py
    basics, attention = ws / "impl" / "basics.py", ws / "impl" / "attention.py"
    assert edit_target(ws, task) == (basics, _def_line(basics, "def linear"))
    _replace_def(basics, "linear", "def linear(x, w, bias=None):\n    return x @ w.T\n")
    assert edit_target(ws, task) == (attention, _def_line(attention, "class SimpleMultiHeadAttention"))


def test_e_opens_a_kernel_file_of_a_kernel_task(ws, course):
    task = course.lesson("2.2").task(2)
    path, line = edit_target(ws, task)
    assert path == ws / "kernels" / "src" / "quantized_matmul.cpp"
    assert path.read_text().splitlines()[line - 1].startswith("mx::array quantized_matmul(")
    metal = course.lesson("2.2").task(3)
    assert edit_target(ws, metal)[0] == ws / "kernels" / "src" / "quantized_matmul.metal"


def test_e_follows_a_symbol_the_learner_moved(ws, course):
    task = course.lesson("1.1").task(2)  # everything written; linear moved to attention.py
    basics, attention = ws / "impl" / "basics.py", ws / "impl" / "attention.py"
    _replace_def(basics, "linear", "")
    _replace_def(attention, "SimpleMultiHeadAttention", "class SimpleMultiHeadAttention:\n    pass\n")
    attention.write_text(attention.read_text() + "\n\ndef linear(x, w, bias=None):\n    return x\n")
    assert edit_target(ws, task) == (attention, _def_line(attention, "def linear"))


# --------------------------------------------------------------------------- reset


def test_reset_restores_the_week_2_attention_not_its_week_1_namesake(ws, course):
    w1, w2 = ws / "impl" / "qwen2_week1.py", ws / "impl" / "qwen2_week2.py"
    mine = "class Qwen2MultiHeadAttention:\n    '''my work'''\n"
    _replace_def(w1, "Qwen2MultiHeadAttention", mine)
    _replace_def(w2, "Qwen2MultiHeadAttention", mine)
    backup, report = reset_day(ws, course.lesson("2.1"), now=datetime(2026, 1, 2, 3, 4, 5),
                               course=course)
    assert "my work" in w1.read_text()          # day 1.3's work is not day 2.1's
    assert "my work" not in w2.read_text()
    assert (backup / "impl" / "qwen2_week2.py").read_text().count("my work") == 1
    assert any(line.startswith("impl/qwen2_week2.py: Qwen2MultiHeadAttention") for line in report)


def test_reset_restores_every_file_of_a_task(ws, course):
    basics, attention = ws / "impl" / "basics.py", ws / "impl" / "attention.py"
    _replace_def(basics, "linear", "def linear(x, w, bias=None):\n    return 'mine'\n")
    _replace_def(basics, "silu", "def silu(x):\n    return 'day 1.4'\n")
    _replace_def(attention, "SimpleMultiHeadAttention", "class SimpleMultiHeadAttention:\n    pass\n")
    reset_day(ws, course.lesson("1.1"), course=course)
    assert "'mine'" not in basics.read_text() and "raise NotImplementedError" in basics.read_text()
    assert "'day 1.4'" in basics.read_text()  # another day's symbol in the same file stays
    assert "class SimpleMultiHeadAttention:\n    pass" not in attention.read_text()


def test_reset_puts_a_day_s_kernel_file_back_and_leaves_a_shared_one(ws, course):
    cpp = ws / "kernels" / "src" / "quantized_matmul.cpp"
    header = ws / "kernels" / "src" / "tiny_llm_ext.h"
    stub = cpp.read_text()
    cpp.write_text("// my kernel\n")
    header.write_text(header.read_text() + "// my declarations\n")
    backup, report = reset_day(ws, course.lesson("2.2"), course=course)
    assert cpp.read_text() == stub
    assert (backup / "kernels" / "src" / "quantized_matmul.cpp").read_text() == "// my kernel\n"
    assert header.read_text().endswith("// my declarations\n")
    # day 2.4 (and later kernel days) declare their kernels in the same header
    assert any("tiny_llm_ext.h: left as it is, since day" in line and "2.4" in line
               for line in report), report


def test_reset_says_when_it_undoes_an_earlier_day_s_work(course):
    lines = {i.path: i.describe() for i in reset_plan(course.lesson("2.6"), course)}
    assert "day 1.2" in lines["impl/positional_encoding.py"]
    assert "RoPE" in lines["impl/positional_encoding.py"]
    assert set(lines) >= {"impl/positional_encoding.py", "impl/qwen2_week2.py",
                          "impl/attention.py", "impl/kv_cache.py", "impl/batch.py"}
    # a file named without a symbol (day 1.7's CMakeLists.txt) is never reset
    assert all(i.path != "kernels/CMakeLists.txt" for i in reset_plan(course.lesson("1.7"), course))


# --------------------------------------------------------------------------- coach, records


def test_the_coach_sees_the_learner_s_code_in_every_file_of_the_task(ws, course):
    from tutor.coach.context import learner_code

    _replace_def(ws / "impl" / "basics.py", "linear",
                 "def linear(x, w, bias=None):\n    return 'mine-linear'\n")
    code = learner_code(ws / "impl", course.lesson("1.1").task(2))
    assert "# basics.py\ndef linear" in code and "mine-linear" in code
    assert "# attention.py\nclass SimpleMultiHeadAttention" in code
    w2 = learner_code(ws / "impl", course.lesson("2.1").task(2))
    assert w2.startswith("# qwen2_week2.py\n") and "# qwen2_week1.py" not in w2
    kernel = learner_code(ws / "impl", course.lesson("2.2").task(2))
    assert "# kernels/src/quantized_matmul.cpp" in kernel and "# kernels/src/tiny_llm_ext.h" in kernel


def test_files_changed_include_the_day_s_kernel_files(ws, course):
    from tutor.records.recorder import changed_files

    (ws / "kernels" / "src" / "flash_attention.cpp").write_text("// mine\n")
    _replace_def(ws / "impl" / "attention.py", "flash_attention",
                 "def flash_attention(q, k, v, scale=None, mask=None):\n    return q\n")
    assert set(changed_files(ws, course.lesson("2.4"), None)) == {
        "kernels/src/flash_attention.cpp", "impl/attention.py"}
