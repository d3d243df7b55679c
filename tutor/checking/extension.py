"""Importing a built C++ extension package (the learner's ``kernels/tiny_llm_ext`` or the
answer key's ``tiny_llm_ext_key``) from its folder.

The check child needs this to run week-2 checks; building is :mod:`tutor.kernels_build`,
a layer above, which uses these too to find what it built.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACKAGES = ("tiny_llm_ext", "tiny_llm_ext_key")


def find_package(src: Path) -> Path | None:
    """The extension's package folder in ``src`` (the one with an ``__init__.py``)."""
    for name in PACKAGES:
        if (src / name / "__init__.py").is_file():
            return src / name
    return None


def no_package(src: Path) -> str:
    return (f"{src} has no tiny_llm_ext/ package folder (with __init__.py); "
            "is this a kernels/ folder?")


def built_module(pkg: Path) -> Path | None:
    mods = sorted(pkg.glob("_ext*.so")) + sorted(pkg.glob("_ext*.pyd"))
    return mods[0] if mods else None


def import_extension(kernels_dir: Path):
    """Import the built extension package (``tiny_llm_ext`` or ``tiny_llm_ext_key``) from
    ``kernels_dir`` without putting the folder on sys.path. A compiled module cannot be
    replaced inside one process: importing a second build of the same package from a
    different folder raises ImportError."""
    src = Path(kernels_dir).expanduser().resolve()
    pkg = find_package(src)
    if pkg is None:
        raise ImportError(no_package(src))
    name = pkg.name
    existing = sys.modules.get(name)
    if existing is not None:
        where = Path(getattr(existing, "__file__", "") or "").resolve().parent
        if where == pkg:
            return existing
        raise ImportError(f"{name} is already imported from {where}; a compiled extension "
                          f"cannot be swapped for {pkg} in the same process.")
    if built_module(pkg) is None:
        hint = "tiny-llm-tutor build-kernels" if name == "tiny_llm_ext" else "build_answer_key()"
        raise ImportError(f"{name} is not built in {pkg} (no _ext module); run `{hint}`.")
    spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        sys.modules.pop(f"{name}._ext", None)
        raise
    return module
