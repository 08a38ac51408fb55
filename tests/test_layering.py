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
                          "import sys; sys.path.insert(0, %r); import allocview.model as m; print(m.__all__[0]); import allocview.gdbext, allocview.commands"
                          % str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Allocator"


def test_only_gdbext_imports_gdb():
    for folder in ("model", "allocview", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "gdb" not in {n for n, lvl in imports_of(path) if not lvl}, path


# model/'s layers: a module imports its own layer and those below it. The
# reference allocator sits beside the decoder (layer 3), never below it:
# neither imports the other; what compares them (drive) sits above both.
MODEL_LAYERS = {
    0: {"errors", "constants", "findings", "state", "entry_points", "files", "arch"},
    1: {"memory", "placement"},                        # source
    2: {"layout", "program"},                          # layout
    3: {"format", "list", "pages", "snapshot"},        # decoder (snapshot)
    4: {"assess", "check", "stats", "diff", "query", "report"},   # check / stats
    5: {"drive", "drive_io", "mixes", "fuzz"},         # what drives or compares
}
BESIDE_THE_DECODER = {"reference", "replay", "trace", "inject", "footprint", "owner"}
LAYER = {m: n for n, mods in MODEL_LAYERS.items() for m in mods} | \
    {m: 3 for m in BESIDE_THE_DECODER}


def model_imports(path):
    """The model modules a model module imports (relative imports)."""
    tree = ast.parse(path.read_text())
    inside_arch = path.parent.name == "arch"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if inside_arch and node.level == 1:
                continue                                 # arch's own modules
            mod = (node.module or "").split(".")[0]
            names = [mod] if mod else [a.name for a in node.names]
            yield from names


def test_every_model_module_has_a_layer():
    mods = {p.stem for p in (ROOT / "model").glob("*.py")} - {"__init__"} | {"arch"}
    assert mods == set(LAYER), mods ^ set(LAYER)


def test_model_data_flows_one_way():
    for path in sorted((ROOT / "model").rglob("*.py")):
        if path.stem == "__init__" and path.parent.name == "model":
            continue
        me = "arch" if path.parent.name == "arch" else path.stem
        for dep in model_imports(path):
            assert LAYER[dep] <= LAYER[me], f"model/{me} (layer {LAYER[me]}) imports {dep} " \
                                            f"(layer {LAYER[dep]})"
            decoder, reference = MODEL_LAYERS[3], BESIDE_THE_DECODER
            assert not (me in decoder and dep in reference), f"decoder {me} imports {dep}"
            assert not (me in reference and dep in decoder), f"reference {me} imports {dep}"


def allocview_imports(path):
    """allocview modules a module imports, as dotted names under allocview."""
    pkg = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[:len(pkg) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
                yield from ([mod] if node.module else [f"{mod}.{a.name}" for a in node.names])
            elif (node.module or "").startswith("allocview"):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (n.name for n in node.names if n.name.startswith("allocview"))


# allocview's layers: where bytes come from never knows how they are shown,
# the pictures never know where bytes come from, and the shared commands
# know neither front end.
ALLOCVIEW_RULES = {
    "allocview.sources": {"allocview.render", "allocview.commands", "allocview.cli",
                          "allocview.htmlreport", "allocview.suite"},
    "allocview.mi": {"allocview.render", "allocview.commands", "allocview.cli"},
    "allocview.render": {"allocview.sources", "allocview.mi", "allocview.cli",
                         "allocview.commands"},
    "allocview.commands": {"allocview.cli", "gdbext"},
}


def test_allocview_layers():
    for path in sorted((ROOT / "allocview").rglob("*.py")):
        me = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for prefix, forbidden in ALLOCVIEW_RULES.items():
            if not (me == prefix or me.startswith(prefix + ".")):
                continue
            for dep in allocview_imports(path):
                assert not any(dep == f or dep.startswith(f + ".") for f in forbidden), \
                    f"{me} imports {dep}"
