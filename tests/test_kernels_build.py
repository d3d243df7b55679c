"""`build-kernels`, the learner's extension skeleton and the answer key's C++/Metal kernels.

The builds are slow (about half a minute each on 2 cores), so each is done once per
module (module-scoped fixtures) and its time printed (`pytest -s` shows it). Metal
checks run only on an Apple GPU; elsewhere they are skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from waiting import poll

from tutor import cli, kernels_build
from tutor.checking.extension import import_extension
from tutor.kernels_build import BuildSetupError, build, parse_compiler_output

HAVE_CXX = any(shutil.which(c) for c in ("c++", "g++", "clang++"))
needs_toolchain = pytest.mark.skipif(not HAVE_CXX, reason="no C++ compiler on this machine")
METAL = bool(mx.metal.is_available())
# The macOS CI sets TINY_LLM_REQUIRE_METAL=1: there a missing GPU must fail, not skip.
REQUIRE_METAL = os.environ.get("TINY_LLM_REQUIRE_METAL") == "1"
metal_only = pytest.mark.skipif(not METAL and not REQUIRE_METAL,
                                reason="needs an Apple GPU (Metal); MLX here runs on the CPU, "
                                       "so the Metal kernels cannot run")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workspace(learner_workspace) -> Path:
    """The session's learner workspace, its kernels built with `build-kernels` (conftest)."""
    return learner_workspace


@pytest.fixture(scope="module")
def learner_ext(workspace):
    """The learner's skeleton, built with `tiny-llm-tutor build-kernels`, imported."""
    return import_extension(workspace / "kernels")


@pytest.fixture(scope="module")
def key_ext(answer_key_ext):
    """The answer key's extension (built once per session by conftest), imported."""
    return import_extension(answer_key_ext)


# --------------------------------------------------------------------------- no build needed


GCC_OUTPUT = """\
[1/19] Building CXX object CMakeFiles/tiny_llm_ext.dir/src/utils.cpp.o
FAILED: CMakeFiles/tiny_llm_ext.dir/src/flash_attention.cpp.o
/usr/bin/c++ -I/ws/kernels -O3 -c /ws/kernels/src/flash_attention.cpp
/ws/kernels/src/flash_attention.cpp: In function 'mlx::core::array tiny_llm_ext::flash_attention(...)':
/ws/kernels/src/flash_attention.cpp:23:5: error: expected ',' or ';' before 'throw'
   23 |     throw std::runtime_error("stub");
      |     ^~~~~
/ws/kernels/src/flash_attention.cpp:24:5: error: 'undefined_thing' was not declared in this scope
/ws/kernels/src/axpby.cpp:10:1: warning: unused variable 'x' [-Wunused-variable]
In file included from /ws/kernels/src/quantized_matmul.cpp:3:
/ws/kernels/src/tiny_llm_ext.h:7:10: fatal error: mlx/nope.h: No such file or directory
/ws/kernels/src/flash_attention.cpp:24:5: error: 'undefined_thing' was not declared in this scope
ninja: build stopped: subcommand failed.
"""

CLANG_LD_CMAKE = """\
\x1b[1m/ws/kernels/bindings.cpp:12:3: \x1b[0m\x1b[0;1;31merror: \x1b[0m\x1b[1muse of undeclared identifier 'foo'\x1b[0m
/usr/bin/ld: CMakeFiles/_ext.dir/bindings.cpp.o: in function `f': bindings.cpp:(.text+0x1c): undefined reference to `tiny_llm_ext::bar(int)'
collect2: error: ld returned 1 exit status
CMake Error at CMakeLists.txt:42 (target_sources):
  Cannot find source file:

    /ws/kernels/src/paged_attention.cpp

"""


def test_parse_gcc_errors_first_error_first():
    msgs = parse_compiler_output(GCC_OUTPUT, Path("/ws/kernels"))
    errors = [m for m in msgs if m.kind == "error"]
    assert errors[0].render() == "src/flash_attention.cpp:23:5: error: expected ',' or ';' before 'throw'"
    assert [(e.file, e.line) for e in errors] == [
        ("src/flash_attention.cpp", 23), ("src/flash_attention.cpp", 24), ("src/tiny_llm_ext.h", 7)]
    assert any(m.kind == "warning" and m.file == "src/axpby.cpp" for m in msgs)


def test_parse_clang_linker_and_cmake_errors():
    msgs = parse_compiler_output(CLANG_LD_CMAKE, Path("/ws/kernels"))
    assert msgs[0].render() == "bindings.cpp:12:3: error: use of undeclared identifier 'foo'"
    assert "undefined reference to tiny_llm_ext::bar(int)" in msgs[1].text
    assert msgs[2].file == "CMakeLists.txt" and msgs[2].line == 42
    assert "Cannot find source file: src/paged_attention.cpp" in msgs[2].text


def test_cmake_falls_back_to_the_pip_package(monkeypatch):
    real_which = shutil.which
    monkeypatch.delenv("CMAKE", raising=False)
    monkeypatch.setattr(kernels_build.shutil, "which",
                        lambda n, *a, **k: None if n == "cmake" else real_which(n, *a, **k))
    path, ver = kernels_build.find_cmake()
    import cmake

    assert Path(path).parent == Path(cmake.CMAKE_BIN_DIR) and ver[:2] >= (3, 27)


def test_missing_compiler_is_a_clear_message(monkeypatch, tmp_path):
    real_which = shutil.which
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(kernels_build.shutil, "which",
                        lambda n, *a, **k: None if n in ("c++", "g++", "clang++")
                        else real_which(n, *a, **k))
    with pytest.raises(BuildSetupError, match=r"No C\+\+ compiler found"):
        kernels_build.find_compiler()
    shutil.copytree(kernels_build.answer_key_source(), tmp_path / "k")
    result = build(tmp_path / "k")
    assert not result.ok and "No C++ compiler found" in result.messages[0]
    fix = "xcode-select --install" if sys.platform == "darwin" else "sudo apt install g++"
    assert fix in result.messages[0]  # how to install one here


def test_nanobind_mismatch_names_the_pip_command(monkeypatch):
    key = kernels_build.mlx_nanobind_key()
    assert key, "could not read the nanobind ABI key from mlx's binary"
    want = kernels_build._internals_version(key)
    nb_ver, nb_abi = kernels_build.installed_nanobind()
    assert nb_abi == want, f"the installed nanobind {nb_ver} (ABI v{nb_abi}) does not match mlx ({key})"
    monkeypatch.setattr(kernels_build, "installed_nanobind", lambda: ("2.4.0", 15))
    with pytest.raises(BuildSetupError) as exc:
        kernels_build.check_nanobind()
    text = str(exc.value)
    assert "nanobind 2.4.0" in text and "incompatible function arguments" in text
    assert f"pip install 'nanobind=={kernels_build.NANOBIND_FOR_INTERNALS[want]}'" in text
    monkeypatch.setattr(kernels_build, "installed_nanobind", lambda: (None, None))
    with pytest.raises(BuildSetupError, match="nanobind is not installed"):
        kernels_build.check_nanobind()


def test_build_kernels_outside_a_workspace_is_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TINY_LLM_TUTOR_WORKSPACE", str(tmp_path / "nowhere"))
    assert cli.main(["build-kernels"]) == cli.EXIT_USAGE
    assert cli.main(["build-kernels", "--dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert "CMakeLists.txt" in capsys.readouterr().err


# --------------------------------------------------------------------------- learner skeleton


@needs_toolchain
def test_learner_axpby_works(learner_ext):
    x = mx.ones((3, 4))
    y = mx.arange(4, dtype=mx.float32)
    out = learner_ext.axpby(x, y, 4.0, 2.0, stream=mx.cpu)
    assert out.shape == (3, 4) and out.dtype == mx.float32
    assert np.allclose(np.array(out), 4.0 + 2.0 * np.arange(4)[None, :])
    for dt in (mx.float16, mx.bfloat16):
        o = learner_ext.axpby(x.astype(dt), y.astype(dt), 0.5, -1.0)
        assert o.dtype == dt
        assert np.allclose(np.array(o.astype(mx.float32)), 0.5 - np.arange(4)[None, :])
    # strided input (a transposed view)
    z = mx.arange(12, dtype=mx.float32).reshape(4, 3).T
    assert np.allclose(np.array(learner_ext.axpby(z, z, 1.0, 1.0)), 2 * np.array(z))


@needs_toolchain
def test_learner_stubs_raise_the_stub_message(learner_ext):
    a = mx.ones((2, 64), dtype=mx.float16)
    with pytest.raises(RuntimeError, match=r"quantized_matmul is still a stub \(lesson day 2\.2\)"):
        learner_ext.quantized_matmul(mx.ones((4, 1)), mx.ones((4, 1)), 64, 4, a,
                                     mx.zeros((4, 8), dtype=mx.uint32), True)
    q = mx.ones((2, 3, 8))
    with pytest.raises(RuntimeError, match=r"flash_attention is still a stub \(lesson day 2\.4\)"):
        learner_ext.flash_attention(q, q, q, mx.zeros((2, 3, 3)), 1.0, is_causal=False,
                                    num_kv_heads=2, num_heads=2)


@needs_toolchain
def test_learner_bindings_use_the_books_argument_names(learner_ext):
    doc_q = learner_ext.quantized_matmul.__doc__
    assert "quantized_matmul(scales: mlx.core.array, biases: mlx.core.array, group_size: int, " \
           "bits: int, a: mlx.core.array, b: mlx.core.array, transpose_b: bool = False" in doc_q
    doc_f = learner_ext.flash_attention.__doc__
    assert "flash_attention(query: mlx.core.array, key: mlx.core.array, value: mlx.core.array, " \
           "mask: mlx.core.array, scale: float = 1.0, is_causal: bool = False, " \
           "num_kv_heads: int, num_heads: int" in doc_f


@needs_toolchain
def test_compiler_error_reports_first_error_file_line(workspace, learner_ext, tmp_path):
    broken = tmp_path / "kernels"
    shutil.copytree(workspace / "kernels", broken, ignore=shutil.ignore_patterns("build", "*.so"))
    src = broken / "src" / "flash_attention.cpp"
    lines = src.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if "throw std::runtime_error" in ln)
    lines.insert(at, "    int missing_semicolon = 1")        # line at+1: error reported on at+2
    lines.insert(at + 2, "    call_something_undeclared();")
    src.write_text("\n".join(lines) + "\n")
    result = build(broken)
    assert not result.ok
    first = result.errors[0]
    assert (first.file, first.line) == ("src/flash_attention.cpp", at + 2), result.messages
    assert result.messages[0].startswith(f"src/flash_attention.cpp:{at + 2}:")
    assert any("call_something_undeclared" in e.text for e in result.errors)
    assert result.log_path == broken / "build" / "build.log" and result.log_path.is_file()
    assert "call_something_undeclared" in result.log_path.read_text()


@needs_toolchain
def test_rebuild_is_incremental(workspace, learner_ext):
    result = build(workspace / "kernels")
    assert result.ok, result.messages
    assert result.seconds < 15, f"a no-change rebuild took {result.seconds:.1f} s"


@pytest.mark.metal
@metal_only
def test_learner_axpby_on_the_gpu(learner_ext):
    out = learner_ext.axpby(mx.ones((3, 4)), mx.ones((3, 4)), 4.0, 2.0, stream=mx.gpu)
    assert np.allclose(np.array(out), 6.0)


# --------------------------------------------------------------------------- answer key: CPU


def _quantized_case(M, N, K, gs, bits, dtype, transpose, seed=0):
    mx.random.seed(seed)
    w = mx.random.normal((K, N) if transpose else (N, K)) * 0.5
    wq, scales, biases = mx.quantize(w, group_size=gs, bits=bits)
    a = mx.random.normal((M, N)).astype(dtype)
    return a, wq, scales.astype(dtype), biases.astype(dtype)


def _qmm_oracle(a, wq, scales, biases, gs, bits, transpose):
    """mx.quantized_matmul in float32, rounded to the activation dtype. (mx's own float16
    and bfloat16 paths accumulate in low precision: up to ~2% / ~15% of max|out| off.)"""
    f32 = mx.float32
    return mx.quantized_matmul(a.astype(f32), wq, scales.astype(f32), biases.astype(f32),
                               transpose=transpose, group_size=gs, bits=bits)


QMM_CASES = [  # M, N (in), K (out), group_size, bits
    (1, 128, 64, 64, 4), (7, 256, 96, 32, 4), (16, 512, 128, 128, 4), (3, 384, 192, 64, 8),
    (33, 1024, 64, 64, 4),
]


@needs_toolchain
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("transpose", [True, False], ids=["t", "n"])
def test_key_quantized_matmul_cpu(key_ext, dtype, transpose):
    tol = {mx.float32: 1e-5, mx.float16: 2e-3, mx.bfloat16: 1e-2}[dtype]
    for M, N, K, gs, bits in QMM_CASES:
        a, wq, s, b = _quantized_case(M, N, K, gs, bits, dtype, transpose)
        out = key_ext.quantized_matmul(s, b, gs, bits, a, wq, transpose_b=transpose, stream=mx.cpu)
        ref = _qmm_oracle(a, wq, s, b, gs, bits, transpose)
        assert out.dtype == dtype and out.shape == (M, K)
        err = np.abs(np.array(out.astype(mx.float32)) - np.array(ref)).max()
        scale = max(1.0, float(np.abs(np.array(ref)).max()))
        assert err <= tol * scale, f"M={M} N={N} K={K} gs={gs} bits={bits}: err {err:.3g}"


@needs_toolchain
def test_key_quantized_matmul_checks_shapes(key_ext):
    a, wq, s, b = _quantized_case(2, 128, 64, 64, 4, mx.float16, True)
    with pytest.raises(ValueError, match="does not match b"):
        key_ext.quantized_matmul(s, b, 64, 4, a[:, :64], wq, transpose_b=True)
    with pytest.raises(ValueError, match="group_size"):
        key_ext.quantized_matmul(s, b, 48, 4, a, wq, transpose_b=True)


def _causal_mask(L, S):
    r = mx.arange(L)[:, None]
    c = mx.arange(S)[None, :]
    return mx.where(c <= r + (S - L), 0.0, -mx.inf).astype(mx.float32)


FLASH_CASES = [  # batch prefix, H_q, H_kv, L, S, E
    ((), 1, 1, 1, 1, 8), ((1,), 4, 2, 7, 13, 16), ((2,), 6, 2, 33, 65, 64),
    ((1,), 8, 1, 100, 100, 128), ((2, 2), 4, 4, 31, 95, 32), ((1,), 14, 2, 5, 37, 64),
]


@needs_toolchain
@pytest.mark.parametrize("kind", ["none", "array", "causal"])
def test_key_flash_attention_cpu(key_ext, kind):
    mx.random.seed(1)
    for batch, H, Hkv, L, S, E in FLASH_CASES:
        q = mx.random.normal((*batch, H, L, E))
        k = mx.random.normal((*batch, Hkv, S, E))
        v = mx.random.normal((*batch, Hkv, S, E))
        scale = 1.0 / np.sqrt(E)
        full = (*batch, H, L, S)
        if kind == "none":
            ref_mask, mask = None, mx.zeros(full)
        elif kind == "array":
            ref_mask = mx.random.normal(full)
            mask = ref_mask
        else:
            ref_mask, mask = "causal", mx.broadcast_to(_causal_mask(L, S), full)
        # mx.fast.scaled_dot_product_attention wants (B, H, L, E): fold the batch prefix.
        q4, k4, v4 = (x.reshape(-1, *x.shape[-3:]) for x in (q, k, v))
        if isinstance(ref_mask, mx.array):
            ref_mask = ref_mask.reshape(-1, H, L, S)
        ref = mx.fast.scaled_dot_product_attention(q4, k4, v4, scale=scale,
                                                   mask=ref_mask).reshape(q.shape)
        out = key_ext.flash_attention(
            q.reshape(-1, L, E), k.reshape(-1, S, E), v.reshape(-1, S, E),
            mask.reshape(-1, L, S), scale, is_causal=kind == "causal",
            num_kv_heads=Hkv, num_heads=H, stream=mx.cpu).reshape(q.shape)
        err = np.abs(np.array(out) - np.array(ref)).max()
        assert err < 2e-5, f"{kind} batch={batch} H={H}/{Hkv} L={L} S={S} E={E}: err {err:.3g}"


@needs_toolchain
def test_key_flash_attention_causal_is_faster(key_ext):
    """L = S = 512, E = 128, 4 heads: causal (skips the masked tiles) vs an all-zero mask,
    interleaved runs, medians; >= 1.3x. Measured up to three times against a noisy machine."""
    H, L, E = 4, 512, 128
    mx.random.seed(2)
    q, k, v = (mx.random.normal((H, L, E)) for _ in range(3))
    zero = mx.zeros((H, L, L))
    causal = mx.broadcast_to(_causal_mask(L, L), (H, L, L))
    mx.eval(q, k, v, zero, causal)

    def run(mask, is_causal):
        t0 = time.perf_counter()
        mx.eval(key_ext.flash_attention(q, k, v, mask, 0.09, is_causal=is_causal,
                                        num_kv_heads=H, num_heads=H, stream=mx.cpu))
        return time.perf_counter() - t0

    run(zero, False), run(causal, True)
    ratios = []
    for _ in range(3):
        tz, tc = [], []
        for _ in range(7):
            tz.append(run(zero, False))
            tc.append(run(causal, True))
        ratios.append(float(np.median(tz) / np.median(tc)))
        if ratios[-1] >= 1.3:
            break
    print(f"\n[kernels] flash attention L=S=512: causal speed-up {ratios[-1]:.2f}x "
          f"(zero mask {1e3 * np.median(tz):.1f} ms, causal {1e3 * np.median(tc):.1f} ms)")
    assert max(ratios) >= 1.3, ratios


@needs_toolchain
def test_key_flash_attention_checks_inputs(key_ext):
    q = mx.ones((4, 3, 8))
    with pytest.raises(ValueError, match="float32"):
        key_ext.flash_attention(q.astype(mx.float16), q, q, mx.zeros((4, 3, 3)), 1.0,
                                num_kv_heads=2, num_heads=4)
    with pytest.raises(ValueError, match="mask"):
        key_ext.flash_attention(q, q[:2], q[:2], mx.zeros((4, 3, 5)), 1.0,
                                num_kv_heads=2, num_heads=4)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        key_ext.flash_attention(q, q, q, mx.zeros((4, 3, 3)), 1.0, num_kv_heads=3, num_heads=4)


# --------------------------------------------------------------------------- answer key: Metal


@pytest.mark.metal
@metal_only
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("transpose", [True, False], ids=["t", "n"])
def test_key_quantized_matmul_metal(key_ext, dtype, transpose):
    tol = {mx.float32: 1e-4, mx.float16: 2e-3, mx.bfloat16: 1e-2}[dtype]
    for M, N, K, gs, bits in QMM_CASES:
        a, wq, s, b = _quantized_case(M, N, K, gs, bits, dtype, transpose)
        out = key_ext.quantized_matmul(s, b, gs, bits, a, wq, transpose_b=transpose, stream=mx.gpu)
        ref = _qmm_oracle(a, wq, s, b, gs, bits, transpose)
        err = np.abs(np.array(out.astype(mx.float32)) - np.array(ref)).max()
        assert err <= tol * max(1.0, float(np.abs(np.array(ref)).max())), (M, N, K, gs, bits, err)


@pytest.mark.metal
@metal_only
@pytest.mark.parametrize("kind", ["none", "array", "causal"])
def test_key_flash_attention_metal(key_ext, kind):
    mx.random.seed(3)
    for batch, H, Hkv, L, S, E in FLASH_CASES:
        q = mx.random.normal((*batch, H, L, E))
        k = mx.random.normal((*batch, Hkv, S, E))
        v = mx.random.normal((*batch, Hkv, S, E))
        full = (*batch, H, L, S)
        mask = {"none": mx.zeros(full), "array": mx.random.normal(full),
                "causal": mx.broadcast_to(_causal_mask(L, S), full)}[kind]
        args = (q.reshape(-1, L, E), k.reshape(-1, S, E), v.reshape(-1, S, E),
                mask.reshape(-1, L, S), 1.0 / np.sqrt(E))
        kw = dict(is_causal=kind == "causal", num_kv_heads=Hkv, num_heads=H)
        gpu = key_ext.flash_attention(*args, **kw, stream=mx.gpu)
        cpu = key_ext.flash_attention(*args, **kw, stream=mx.cpu)
        err = np.abs(np.array(gpu) - np.array(cpu)).max()
        assert err < 1e-4, (kind, batch, H, Hkv, L, S, E, err)


@pytest.mark.metal
def test_metal_tests_skip_with_a_reason_off_apple_gpus():
    if METAL:
        pytest.skip("Metal is available here; the Metal tests run")
    tests = [f for name, f in globals().items() if name.startswith("test_") and name !=
             "test_metal_tests_skip_with_a_reason_off_apple_gpus"
             and any(m.name == "metal" for m in getattr(f, "pytestmark", []))]
    assert len(tests) >= 3
    for f in tests:  # every Metal test skips here with the reason, unless the GPU is required
        skips = [m for m in f.pytestmark if m.name == "skipif"]
        assert skips and skips[0].args[0] is (not REQUIRE_METAL), f.__name__
        assert "Apple GPU" in skips[0].kwargs["reason"], f.__name__


def test_a_build_timeout_ends_the_compilers_too(tmp_path, monkeypatch):
    """cmake's compilers are its children: a timeout must end them with it."""
    import os
    import signal
    import time

    from tutor.kernels_build import build

    kdir = tmp_path / "kernels"
    (kdir / "tiny_llm_ext").mkdir(parents=True)
    (kdir / "tiny_llm_ext" / "__init__.py").write_text("")
    (kdir / "CMakeLists.txt").write_text("")
    pidfile = tmp_path / "compiler.pid"
    cmake = tmp_path / "cmake"
    cmake.write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "cmake version 3.30.0"; exit 0; fi
sleep 120 &
echo $! > {pidfile}
wait
""")
    cmake.chmod(0o755)
    monkeypatch.setenv("CMAKE", str(cmake))
    t0 = time.monotonic()
    result = build(kdir, timeout=2)
    assert not result.ok and "timed out" in result.messages[0]
    assert time.monotonic() - t0 < 10
    pid = int(pidfile.read_text())
    try:
        poll(lambda: not _running(pid), 3, "the compiler to end with the build's timeout")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------- paged attention (week 3)


@needs_toolchain
def test_learner_paged_attention_is_a_bound_stub(learner_ext):
    doc = learner_ext.paged_attention.__doc__
    assert "paged_attention(query: mlx.core.array, key_pages: mlx.core.array, value_pages: " \
           "mlx.core.array, block_table: mlx.core.array, context_lens: mlx.core.array, " \
           "scale: float = 1.0, is_causal: bool = False, num_kv_heads: int, num_heads: int" in doc
    q = mx.ones((2, 1, 8))
    pages = mx.ones((3, 1, 4, 8))
    with pytest.raises(RuntimeError, match=r"paged_attention is still a stub \(lesson day 3\.2\)"):
        learner_ext.paged_attention(q, pages, pages, mx.zeros((1, 2), dtype=mx.int32),
                                    mx.array([5], dtype=mx.int32), 1.0, is_causal=True,
                                    num_kv_heads=1, num_heads=2)


def _paged_case(seed, B, Hq, H, L, D, ps, lens, width_extra=0):
    """Random pages (garbage in every unused slot), a block table of shuffled page ids with
    -1 after each row's pages, and each row's dense (H, len, D) keys/values for the
    reference, gathered here with numpy."""
    rng = np.random.default_rng(seed)
    need = [-(-n // ps) for n in lens]
    P = sum(need) + 2
    perm = rng.permutation(P)
    table = -np.ones((B, max(need) + width_extra), dtype=np.int32)
    at = 0
    for b, n in enumerate(need):
        table[b, :n] = perm[at:at + n]
        at += n
    q = rng.standard_normal((B, Hq, L, D)).astype(np.float32)
    kp = rng.standard_normal((P, H, ps, D)).astype(np.float32)
    vp = rng.standard_normal((P, H, ps, D)).astype(np.float32)
    dense = [(np.concatenate([kp[p] for p in table[b, :need[b]]], axis=1)[:, :n],
              np.concatenate([vp[p] for p in table[b, :need[b]]], axis=1)[:, :n])
             if n else None for b, n in enumerate(lens)]
    return q, kp, vp, table, dense


PAGED_CASES = [  # B, H_q, H, L, D, page_size, context lengths, causal, extra table width
    (4, 4, 2, 1, 16, 4, [7, 0, 12, 3], True, 2), (1, 8, 2, 6, 32, 8, [29], True, 0),
    (3, 6, 3, 3, 16, 5, [3, 11, 20], True, 4), (2, 2, 1, 4, 64, 16, [40, 70], False, 1),
    (2, 14, 2, 1, 128, 32, [100, 0], True, 3), (1, 2, 2, 9, 8, 3, [9], True, 0),
]


def _check_paged(key_ext, stream, tol):
    for i, (B, Hq, H, L, D, ps, lens, causal, extra) in enumerate(PAGED_CASES):
        q, kp, vp, table, dense = _paged_case(400 + i, B, Hq, H, L, D, ps, lens, extra)
        scale = 1.0 / np.sqrt(D)
        out = key_ext.paged_attention(
            mx.array(q.reshape(B * Hq, L, D)), mx.array(kp), mx.array(vp), mx.array(table),
            mx.array(np.array(lens, dtype=np.int32)), scale, is_causal=causal,
            num_kv_heads=H, num_heads=Hq, stream=stream)
        out = np.array(out).reshape(B, Hq, L, D)
        for b, kv in enumerate(dense):
            if kv is None:  # an empty slot comes back as zeros, not NaN
                assert np.all(out[b] == 0), (i, b)
                continue
            k, v = (mx.array(x)[None] for x in kv)
            with mx.stream(mx.cpu):
                ref = mx.fast.scaled_dot_product_attention(
                    mx.array(q[b])[None], k, v, scale=scale,
                    mask="causal" if causal and L > 1 else None)
                err = np.abs(out[b] - np.array(ref[0])).max()
            assert err < tol, f"case {i} row {b}: err {err:.3g}"


@needs_toolchain
def test_key_paged_attention_cpu(key_ext):
    _check_paged(key_ext, mx.cpu, 2e-5)


@needs_toolchain
def test_key_paged_attention_checks_inputs(key_ext):
    q = mx.ones((4, 1, 8))
    pages = mx.ones((3, 2, 4, 8))
    table = mx.zeros((2, 2), dtype=mx.int32)
    lens = mx.array([3, 4], dtype=mx.int32)
    with pytest.raises(ValueError, match="float32"):
        key_ext.paged_attention(q.astype(mx.float16), pages, pages, table, lens, 1.0,
                                num_kv_heads=2, num_heads=2)
    with pytest.raises(ValueError, match="int32"):
        key_ext.paged_attention(q, pages, pages, table.astype(mx.float32), lens, 1.0,
                                num_kv_heads=2, num_heads=2)
    with pytest.raises(ValueError, match="batch size"):
        key_ext.paged_attention(q, pages, pages, table[:1], lens[:1], 1.0,
                                num_kv_heads=2, num_heads=2)
    with pytest.raises(ValueError, match="num_kv_heads"):
        key_ext.paged_attention(q, pages, pages, table, lens, 1.0, num_kv_heads=1, num_heads=2)


@pytest.mark.metal
@metal_only
def test_key_paged_attention_metal(key_ext):
    _check_paged(key_ext, mx.gpu, 1e-4)
