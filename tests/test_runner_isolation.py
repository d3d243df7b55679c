"""The check runner keeps the learner's code out of the tutor's process and survives
whatever that code does: endless loops, crashes, floods of output, syntax errors."""

from __future__ import annotations

import json
import os
import time

import pytest
from waiting import poll

from tutor.checking.runner import OUTPUT_CAP, run_day

SDPA = "scaled_dot_product_attention_simple"


def _break(impl, body: str, prelude: str = "") -> None:
    """Replace the body of the learner's attention function with ``body``."""
    path = impl / "attention.py"
    src = path.read_text()
    start = src.index(f"def {SDPA}(")
    end = src.index("\ndef ", start + 1) if "\ndef " in src[start + 1:] else len(src)
    nxt = src.find("\nclass ", start + 1)
    if nxt != -1 and nxt < end:
        end = nxt
    header_end = src.index(":\n", src.index(")", start)) + 2
    # keep the signature (possibly over several lines), replace the body
    sig = src[start:header_end]
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    path.write_text(prelude + src[:start] + sig + indented + "\n\n" + src[end:])


def _by_id(result):
    return {c["id"]: c for c in result["checks"]}


def test_infinite_loop_times_out_and_kills_the_group(stub_impl, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    _break(stub_impl, f"""
import subprocess
p = subprocess.Popen(["sleep", "60"])
open({str(pidfile)!r}, "w").write(str(p.pid))
while True:
    pass
""")
    t0 = time.monotonic()
    result = run_day("1.1", stub_impl, timeout_s=3)
    took = time.monotonic() - t0
    assert took < 3 + 2
    first = result["checks"][0]
    assert first["status"] == "timeout"
    assert "3 s" in first["message"]
    assert result["status"] == "fail"
    pid = int(pidfile.read_text())
    poll(lambda: not _alive(pid), 5, "the check's grandchild to be gone")


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a reaper (in a container
    PID 1 may never reap an orphan)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("body, expect", [
    ("import os\nos._exit(3)", "exited with code 3"),
    ("import ctypes\nctypes.string_at(0)", "SIGSEGV"),
    ("import os\nos.abort()", "SIGABRT"),
])
def test_crash_is_reported_and_other_checks_still_run(stub_impl, body, expect):
    _break(stub_impl, body)
    result = run_day("1.1", stub_impl, timeout_s=20)
    checks = _by_id(result)
    crashed = [c for c in checks.values() if c["status"] == "crashed"]
    assert crashed, result
    assert expect in crashed[0]["message"]
    # the task-2 checks do not call the broken function first: they ran in a new child
    assert checks["linear"]["status"] in ("fail", "error")
    assert "Not implemented" in checks["linear"]["message"]


def test_output_flood_is_capped(stub_impl):
    _break(stub_impl, """
import sys
for _ in range(100):
    sys.stdout.write("x" * 1_000_000)
raise NotImplementedError("still working on it")
""")
    t0 = time.monotonic()
    result = run_day("1.1", stub_impl, timeout_s=30)
    assert time.monotonic() - t0 < 30
    first = result["checks"][0]
    out = first["evidence"]["output"]
    assert len(out) <= OUTPUT_CAP + 200
    assert "not shown" in out
    assert len(json.dumps(result)) < 200_000


def test_syntax_error_names_file_and_line(stub_impl):
    path = stub_impl / "attention.py"
    lines = path.read_text().splitlines()
    lines.insert(3, "def broken(:")
    path.write_text("\n".join(lines) + "\n")
    result = run_day("1.1", stub_impl, timeout_s=20)
    for c in result["checks"]:
        assert c["status"] == "error"
        assert "SyntaxError" in c["message"]
        assert "attention.py, line 4" in c["message"]


def test_learner_exception_shows_learner_frames_only(stub_impl):
    _break(stub_impl, "raise ValueError('shapes do not line up')")
    result = run_day("1.1", stub_impl, timeout_s=20)
    first = result["checks"][0]
    assert first["status"] == "error"
    assert "ValueError: shapes do not line up" in first["message"]
    assert "attention.py" in first["message"]
    text = json.dumps(first)
    assert "harness" not in text and "_tutor_checks" not in text and "child.py" not in text


SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-secret", "HF_TOKEN": "hf_secret", "OPENAI_API_KEY": "sk-secret",
    "GITHUB_PAT": "ghp_secret", "DB_PWD": "pwd-secret", "HARMLESS_LOOKING": "hidden-secret",
    "HTTPS_PROXY": "http://user:proxy-secret@proxy.example:3128",
    "https_proxy": "http://user:proxy-secret@proxy.example:3128",
    "MLX_API_KEY": "mlx-secret",
}


def test_child_environment_is_an_allowlist(key_impl, tmp_path, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("MLX_DISABLE_COMPILE", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    dump = tmp_path / "env.json"
    with open(key_impl / "basics.py", "a") as f:  # the answer key, dumping its environment
        f.write(f"\nimport json, os\njson.dump(dict(os.environ), open({str(dump)!r}, 'w'))\n")
    result = run_day("1.1", key_impl, timeout_s=60)
    assert result["status"] == "pass", result  # MLX and the package still work
    env = json.loads(dump.read_text())
    leaked = [k for k, v in env.items() if k in SECRETS or "secret" in v]
    assert not leaked, leaked
    assert env["LC_ALL"] == "C.UTF-8" and env["MLX_DISABLE_COMPILE"] == "0"
    assert env["OMP_NUM_THREADS"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]


def test_a_checks_whole_output_is_attached(stub_impl, monkeypatch):
    """Output is all read before the results are put together, however late a reader
    thread would get to run; and the pipe is closed before run_day returns."""
    import threading

    class LateThread(threading.Thread):  # a busy machine: helper threads start late
        def run(self):
            time.sleep(2)
            super().run()

    monkeypatch.setattr(threading, "Thread", LateThread)
    path = stub_impl / "attention.py"  # the day's last check, so nothing runs after it
    src = path.read_text()
    call = src.index("    def __call__(", src.index("class SimpleMultiHeadAttention"))
    path.write_text(src[:call] + """    def __call__(self, *args, **kwargs):
        print("first line", flush=True)
        print("last line", flush=True)
        raise NotImplementedError("still working on it")

    def _unused(""" + src[call + len("    def __call__("):])
    fds = len(os.listdir("/proc/self/fd"))
    result = run_day("1.1", stub_impl, timeout_s=30)
    checks = _by_id(result)
    out = checks["mha"]["evidence"].get("output", "")
    assert out == "first line\nlast line\n", checks["mha"]
    assert not any(c["evidence"].get("output") for c in result["checks"] if c["id"] != "mha")
    assert len(os.listdir("/proc/self/fd")) == fds


def test_output_marks_split_across_reads():
    from tutor.checking.output import _MARK, ChildOutput

    rfd, wfd = os.pipe()
    out = ChildOutput(os.fdopen(rfd, "rb", buffering=0))
    stream = (b"import noise\n" + _MARK + b"start 1.1 a\x00" + b"from a\x00\x1b" + _MARK
              + b"end\x00" + _MARK + b"start 1.1 b\x00" + b"from b\n")
    for i in range(0, len(stream), 5):  # every mark cut somewhere
        os.write(wfd, stream[i:i + 5])
        out.drain()
    os.close(wfd)
    out.close()
    texts = {k: v.text() for k, v in out.outputs.items()}
    assert texts == {("", ""): "import noise\n", ("1.1", "a"): "from a\x00\x1b",
                     ("1.1", "b"): "from b\n"}


def test_output_of_a_crashed_check_is_attached(stub_impl):
    _break(stub_impl, """
import os, sys
sys.stdout.write("before the crash\\n" * 3000)
sys.stdout.flush()
os._exit(3)
""")
    result = run_day("1.1", stub_impl, timeout_s=30)
    first = result["checks"][0]
    assert first["status"] == "crashed"
    assert first["evidence"]["output"].rstrip().endswith("before the crash")


def test_cancel_kills_the_run(stub_impl):
    import threading

    _break(stub_impl, "while True:\n    pass")
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    t0 = time.monotonic()
    result = run_day("1.1", stub_impl, timeout_s=30, cancel=cancel)
    assert time.monotonic() - t0 < 5
    assert all(c["status"] == "skipped" for c in result["checks"])
    assert result["status"] == "fail"


def test_a_day_without_a_checks_module_is_an_error_naming_it(stub_impl):
    """Not a quiet skip ("not available yet"): the course cannot hold such a day, so it is
    a broken tutor, and the result says which module is missing."""
    result = run_day("9.9", stub_impl, timeout_s=20)
    assert result["status"] == "fail"
    [c] = result["checks"]
    assert c["status"] == "error" and c["skip_reason"] is None
    assert "checks/week9/day9_9.py is missing" in c["message"]
    assert c["evidence"] == {"missing_module": "checks/week9/day9_9.py"}


# --------------------------------------------------------------------------- several days


@pytest.fixture
def key_impl(tmp_path):
    import shutil

    from tutor import paths

    dest = tmp_path / "impl"
    shutil.copytree(paths.answer_key_dir(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_one_child_runs_several_days_in_order(key_impl):
    from tutor.checking.runner import run_days

    started = []
    results = list(run_days([("1.2", 30), ("1.4", 30)], key_impl,
                            on_day=lambda d: started.append(d) or None))
    assert started == ["1.2", "1.4"]
    assert [r["day"] for r in results] == ["1.2", "1.4"]
    assert all(r["status"] == "pass" for r in results), results


def test_a_crash_in_one_day_leaves_the_next_day_running(key_impl):
    from tutor.checking.runner import run_days

    _break(key_impl, "import os\nos._exit(3)")
    first, second = run_days([("1.1", 30), ("1.2", 30)], key_impl)
    assert _by_id(first)["sdpa-simple"]["status"] == "crashed"
    assert _by_id(first)["linear"]["status"] == "pass"  # a new child took up the rest
    assert second["status"] == "pass", second


def test_a_timeout_spends_only_its_own_days_budget(key_impl):
    from tutor.checking.runner import run_days

    _break(key_impl, "while True:\n    pass")
    t0 = time.monotonic()
    first, second = run_days([("1.1", 2), ("1.2", 30)], key_impl)
    assert time.monotonic() - t0 < 2 + 15
    assert _by_id(first)["sdpa-simple"]["status"] == "timeout"
    assert second["status"] == "pass", second


def test_an_import_error_is_reported_for_every_day(key_impl):
    from tutor.checking.runner import run_days

    (key_impl / "basics.py").write_text("def oops(:\n")
    results = list(run_days([("1.1", 30), ("1.4", 30)], key_impl))
    assert [r["day"] for r in results] == ["1.1", "1.4"]
    for r in results:
        assert r["status"] == "fail"
        assert all("basics.py" in c["message"] or "SyntaxError" in c["message"]
                   for c in r["checks"]), r


def test_a_hang_while_importing_is_a_timeout_with_the_reason(stub_impl):
    with open(stub_impl / "basics.py", "a") as f:
        f.write("\nwhile True:\n    pass\n")
    result = run_day("1.1", stub_impl, timeout_s=2)
    assert {c["status"] for c in result["checks"]} == {"timeout"}
    assert all("import" in c["message"] for c in result["checks"])


def test_a_crash_while_importing_is_reported_as_such(stub_impl):
    with open(stub_impl / "basics.py", "a") as f:
        f.write("\nimport os\nos._exit(4)\n")
    result = run_day("1.1", stub_impl, timeout_s=20)
    assert {c["status"] for c in result["checks"]} == {"crashed"}
    assert all("while importing" in c["message"] for c in result["checks"])
