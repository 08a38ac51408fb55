"""Import rules that keep model/ loadable by gdb's bare Python and data
flowing one way."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN_IN_MODEL = {"gdb", "gdbext", "allocview", "rich", "pygdbmi", "qemu", "elftools"}


def imports_of(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for n in node.names:
                yield n.name.split(".")[0], 0
        elif isinstance(node, ast.ImportFrom):
            yield (node.module or "").split(".")[0], node.level


def test_model_imports_only_the_standard_library():
    for path in sorted((ROOT / "model").rglob("*.py")):
        for name, level in imports_of(path):
            if level:
                continue
            assert name not in FORBIDDEN_IN_MODEL, f"{path.name} imports {name}"
            assert name in sys.stdlib_module_names or name == "__future__", \
                f"{path.name} imports {name}, not in the standard library"


def test_model_imports_without_site_packages():
    out = subprocess.run([sys.executable, "-S", "-c",
                          "import sys; sys.path.insert(0, %r); import model; print(model.__all__[0])"
                          % str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Allocator"


def test_only_gdbext_imports_gdb():
    for folder in ("model", "allocview", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "gdb" not in {n for n, lvl in imports_of(path) if not lvl}, path
