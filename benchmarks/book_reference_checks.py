"""The book's own reference solution (src/tiny_llm_ref at ea4769d) through the tutor's checks,
with the book's own C++ extension (src/extensions_ref) built on this machine.

The book is not shipped with the tutor; give a copy of skyzh/tiny-llm at commit ea4769d:

    git clone https://github.com/skyzh/tiny-llm /tmp/tiny-llm && git -C /tmp/tiny-llm checkout ea4769d
    python benchmarks/book_reference_checks.py --book /tmp/tiny-llm [--days 3.1 3.2]

Everything happens in a scratch copy. Three edits make the book's code load here, none of
them in a kernel's arithmetic:

* its extension is written for macOS: the unqualified ``float16_t`` becomes
  ``mx::float16_t``, and the two ``eval_gpu`` bodies that call Metal unguarded go behind
  ``_METAL_`` (as the book's own paged_attention.cpp already does), so the CPU build links;
* the build goes into a folder shaped like a learner's ``kernels/`` (``tiny_llm_ext/``),
  which is what ``--kernels`` loads;
* ``from extensions_ref import tiny_llm_ext_ref`` becomes an import of that extension, and
  the ``models.py`` symlink (into the book's starter code) is copied as a file.

It prints each day's checks with their status and the pitfall a failure names. At ea4769d
the expected failures are the book's known bugs (see BOOK_BUGS in
tests/test_week3_book_compat.py and tests/test_week2_book_compat.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXT = "src/extensions_ref"
PKG = "src/tiny_llm_ref"
IMPORT = "from extensions_ref import tiny_llm_ext_ref"
IMPORT_HERE = "from extensions import tiny_llm_ext as tiny_llm_ext_ref"


def _guard_gpu(path: Path, cls: str) -> None:
    """Put ``cls::eval_gpu`` behind _METAL_, with a CPU-build body that refuses."""
    lines = path.read_text().split("\n")
    start = next((i for i, line in enumerate(lines)
                  if line.startswith(f"void {cls}::eval_gpu(")), None)
    if start is None or (start > 0 and lines[start - 1].startswith("#if")):
        return  # already guarded (or written differently): leave it
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    lines.insert(end + 1, f"#else\n{lines[start]}\n"
                          '    throw std::runtime_error("no Metal in this build");\n}\n#endif')
    lines.insert(start, "#ifdef _METAL_")
    path.write_text("\n".join(lines))


def port_extension(ext: Path) -> None:
    src = ext / "src"
    for name, cls in (("quantized_matmul.cpp", "QuantizedMatmul"),
                      ("flash_attention.cpp", "FlashAttention"),
                      ("paged_attention.cpp", "PagedAttention")):
        f = src / name
        if f.exists():
            f.write_text(re.sub(r"(?<![:\w])float16_t", "mx::float16_t", f.read_text()))
            _guard_gpu(f, cls)


def build_extension(ext: Path, kernels: Path) -> None:
    """Build with the book's build.py (mlx's CMakeBuild), then lay the result out as a
    ``kernels/`` folder."""
    from tutor.kernels_build import check_nanobind, find_cmake

    check_nanobind()  # the extension shares MLX's types: nanobind must match mlx's
    cmake_dir = str(Path(find_cmake()[0]).parent)
    env = {**os.environ, "PATH": cmake_dir + os.pathsep + os.environ.get("PATH", "")}
    run = subprocess.run([sys.executable, "build.py"], cwd=ext, env=env,
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit("the book's extension did not build:\n" + run.stdout[-3000:]
                         + run.stderr[-3000:])
    dest = kernels / "tiny_llm_ext"
    dest.mkdir(parents=True)
    for f in (ext / "tiny_llm_ext_ref").iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)


def prepare_package(book: Path, dest: Path) -> Path:
    pkg = dest / "tiny_llm_ref"
    shutil.copytree(book / PKG, pkg, symlinks=True)
    for f in pkg.iterdir():
        if f.is_symlink():
            target = (book / PKG / os.readlink(f)).resolve()
            f.unlink()
            shutil.copy2(target, f)
    for f in pkg.glob("*.py"):
        text = f.read_text()
        if IMPORT in text:
            f.write_text(text.replace(IMPORT, IMPORT_HERE))
    return pkg


def check(day: str, pkg: Path, kernels: Path) -> dict:
    exe = shutil.which("tiny-llm-tutor") or "tiny-llm-tutor"
    run = subprocess.run([exe, "check", f"day{day}", "--impl", str(pkg), "--kernels",
                          str(kernels), "--json"], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    return json.loads(run.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--book", required=True, help="the book's repository at commit ea4769d")
    ap.add_argument("--days", nargs="+", default=["3.1", "3.2"])
    args = ap.parse_args()
    book = Path(args.book).resolve()
    if not (book / PKG).is_dir() or not (book / EXT).is_dir():
        print(f"{book} does not look like tiny-llm at ea4769d (no {PKG} or {EXT})")
        return 2
    with tempfile.TemporaryDirectory(prefix="book-ref-") as tmp:
        tmp = Path(tmp)
        ext = tmp / "extensions_ref"
        shutil.copytree(book / EXT, ext, ignore=shutil.ignore_patterns("build"))
        port_extension(ext)
        build_extension(ext, tmp / "kernels")
        pkg = prepare_package(book, tmp / "impl")
        for day in args.days:
            result = check(day, pkg, tmp / "kernels")
            print(f"day {day}: {result['status']}")
            for c in result["checks"]:
                pit = (c.get("diagnosis") or {}).get("pitfall") or ""
                why = (c.get("skip_reason") or "") if c["status"] == "skipped" else ""
                print(f"  {c['id']:26} {c['status']:8} {pit or why[:60]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
