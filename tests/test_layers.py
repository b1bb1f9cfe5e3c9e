"""Layers point down: no library module of ffaccel imports a command-line module.

CLI modules: ``ffaccel.cli``, every ``__main__``, and the top-level tools
(``ffaccel.train``, ``eval``, ``gen``, ``verify``, ``lint``, ``import``). Everything else under
``ffaccel/`` is library code and may import only library code, at module level or inside a
function alike. The check reads the source with ``ast``; it imports nothing.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ffaccel"
TOOLS = {"ffaccel.cli", "ffaccel.train", "ffaccel.eval", "ffaccel.gen", "ffaccel.verify", "ffaccel.lint",
         "ffaccel.import"}

# (library module, CLI module it imports): known exceptions, each with its reason. The test
# fails if an exception is no longer needed, so the list cannot go stale.
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_cli(name: str) -> bool:
    return name in TOOLS or name.split(".")[-1] == "__main__"


def imported_modules(source: str, name: str, is_package: bool) -> set[str]:
    """Absolute names of every module an import statement in ``source`` may load
    (``from a import b`` names both ``a`` and ``a.b``)."""
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def violations(source: str, name: str, is_package: bool = False) -> set[tuple[str, str]]:
    if is_cli(name):
        return set()
    return {(name, m) for m in imported_modules(source, name, is_package)
            if m.startswith("ffaccel") and is_cli(m)}


def test_library_modules_never_import_cli_modules():
    found = set()
    files = sorted(PKG.rglob("*.py"))
    assert len(files) > 30
    for f in files:
        found |= violations(f.read_text(), module_name(f), f.name == "__init__.py")
    bad = found - ALLOWED
    assert not bad, "library modules importing CLI modules:\n" + "\n".join(f"  {a} -> {b}" for a, b in sorted(bad))
    stale = ALLOWED - found
    assert not stale, f"exceptions no longer needed, remove them from ALLOWED: {sorted(stale)}"


def test_the_check_sees_every_import_form():
    """The detector itself: relative and absolute, module level and inside functions."""
    assert violations("from ..cli import FFAccelError", "ffaccel.model.x") == {("ffaccel.model.x", "ffaccel.cli")}
    assert violations("def f():\n    from ..perf.__main__ import analyse\n", "ffaccel.energy.report") == \
        {("ffaccel.energy.report", "ffaccel.perf.__main__")}
    assert violations("from .. import train", "ffaccel.model.cache") == {("ffaccel.model.cache", "ffaccel.train")}
    assert violations("import ffaccel.eval as e", "ffaccel.x") == {("ffaccel.x", "ffaccel.eval")}
    assert violations("from .dse import __main__", "ffaccel", is_package=True) == {("ffaccel", "ffaccel.dse.__main__")}
    assert violations("from ..cli import make_parser", "ffaccel.perf.__main__") == set()   # a CLI may
    assert violations("from ..errors import FFAccelError\nfrom .cycles import x", "ffaccel.perf.report") == set()
    assert module_name(PKG / "dse" / "__main__.py") == "ffaccel.dse.__main__"
    assert module_name(PKG / "model" / "__init__.py") == "ffaccel.model"


def test_cli_reexports_the_lower_layers():
    from ffaccel import cli, errors, fsutil
    assert cli.FFAccelError is errors.FFAccelError
    assert cli.atomic_write_bytes is fsutil.atomic_write_bytes
    assert cli.atomic_write_text is fsutil.atomic_write_text
