from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tutor import paths

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stub_impl(tmp_path) -> Path:
    """A fresh copy of the learner stubs, named like a learner's package."""
    dest = tmp_path / "ws" / "impl"
    shutil.copytree(paths.stubs_dir(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="session")
def answer_key_ext(tmp_path_factory) -> Path:
    """The answer key's C++ extension, built once per test session (about half a minute
    on two cores). TINY_LLM_KEY_EXT_DIR reuses a build between sessions."""
    from tutor.kernels_build import build_answer_key

    dest = Path(os.environ.get("TINY_LLM_KEY_EXT_DIR") or
                tmp_path_factory.mktemp("answer_key_ext"))
    result = build_answer_key(dest)
    if not result.ok:
        pytest.fail("the answer key's extension did not build:\n" + "\n".join(result.messages))
    return dest


@pytest.fixture(scope="session")
def learner_workspace(tmp_path_factory) -> Path:
    """A learner's workspace whose kernels/ skeleton (axpby works, the week's kernels are
    stubs) is built as the learner builds it, with `tiny-llm-tutor build-kernels` run
    inside it: once per session (about 20 s on two cores), for the kernel tests and the
    week-2 runs on the stubs. Tests only read it (a rebuild changes nothing)."""
    import time

    from tutor import cli
    from tutor.workspace import init_workspace

    ws = tmp_path_factory.mktemp("learner") / "ws"
    init_workspace(ws)
    t0 = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        mp.delenv("TINY_LLM_TUTOR_WORKSPACE", raising=False)
        rc = cli.main(["build-kernels"])
    print(f"\n[kernels] learner skeleton: clean build-kernels took "
          f"{time.perf_counter() - t0:.1f} s")
    if rc != 0:
        log = ws / "kernels" / "build" / "build.log"
        pytest.fail("the learner's kernels/ skeleton did not build:\n"
                    + (log.read_text()[-4000:] if log.is_file() else f"exit {rc}"))
    return ws


@pytest.fixture
def answer_key_copy(tmp_path) -> Path:
    dest = tmp_path / "key" / "answer_key"
    shutil.copytree(paths.answer_key_dir(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


# --------------------------------------------------------------------------- no network
# Unit tests never reach the real network: a connection to anything but a loopback
# address fails at once (local fake servers and a local mlx_lm.server stay reachable).

import ipaddress  # noqa: E402
import socket  # noqa: E402

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class NetworkBlocked(OSError):
    pass


def _is_loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]")
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def allowed(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True  # unix sockets and friends
        return _is_loopback(address[0])

    def connect(sock, address):
        if not allowed(sock, address):
            raise NetworkBlocked(f"network access blocked in tests: {address!r}")
        return real_connect(sock, address)

    def connect_ex(sock, address):
        if not allowed(sock, address):
            raise NetworkBlocked(f"network access blocked in tests: {address!r}")
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, f"name lookup blocked in tests: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield


# --------------------------------------------------------------------------- snapshot report
# pytest-textual-snapshot writes its HTML report into the current directory on a failure;
# send it to the temp directory so a test run never writes into the repository.


def pytest_configure(config):
    import tempfile

    config.addinivalue_line("markers", "real_weights: needs a downloaded checkpoint; may skip "
                                       "without it, even in CI")

    try:
        report = config.getoption("--snapshot-report")
    except ValueError:  # the plugin is not installed
        return
    if report == "snapshot_report.html":
        config.option.snapshot_report = str(Path(tempfile.gettempdir())
                                            / "tiny-llm-tutor-snapshot-report.html")


# --------------------------------------------------------------------------- no skips in CI
# `.ci/run` sets TINY_LLM_REQUIRE_TOOLS=1: there every tool and fixture the tests use (a C++
# compiler, tmux, mlx_lm, the fixtures in this repository...) must be present, so a test
# that would skip for a missing one fails instead, with the skip's reason. Only tests
# marked `metal` (no Apple GPU: the macOS CI requires one with TINY_LLM_REQUIRE_METAL=1) or
# `real_weights` may still skip.

REQUIRE_TOOLS = os.environ.get("TINY_LLM_REQUIRE_TOOLS") == "1"
MAY_SKIP = ("metal", "real_weights")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_TOOLS and report.skipped) or hasattr(report, "wasxfail"):
        return
    if any(item.get_closest_marker(m) for m in MAY_SKIP):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped, but TINY_LLM_REQUIRE_TOOLS=1 allows no skip here "
                       f"(only tests marked {' or '.join(MAY_SKIP)} may skip): {reason}")
