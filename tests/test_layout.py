"""The package's folders are its architecture: layers import only downward, with no circle,
and every module stays readable in one sitting."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "capslib"

# lowest first; a package may import its own modules and any package left of it
LAYERS = [("core",), ("model",), ("data",), ("train",), ("study",), ("run", "detect"), ("views",), ("book",),
          ("cli",), ("tools",)]
LAYER_OF = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, path: Path, known: dict) -> list[tuple[str, int]]:
    """Every capslib module ``name`` imports (function-level imports too), with the line."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == "capslib" or target.startswith("capslib.")):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub if sub in known else target, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("capslib.")]
    return [(t, line) for t, line in out if t in known and t != name]


def graph() -> dict[str, list[tuple[str, int]]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def package_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_edges(g) -> list[str]:
    bad = []
    for src, targets in g.items():
        ps = package_of(src)
        if ps not in LAYER_OF:          # capslib/__init__ and __main__ stand above everything
            continue
        for dst, line in targets:
            pd = package_of(dst)
            if pd == ps or dst == "capslib":     # the package itself: __version__; it imports nothing eagerly
                continue
            if pd not in LAYER_OF or LAYER_OF[pd] >= LAYER_OF[ps]:
                bad.append(f"{src} (line {line}) -> {dst}")
    return bad


def circles(g) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in g.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_every_module_lives_in_a_layer():
    top = sorted(n for n in modules() if package_of(n) not in LAYER_OF and n not in ("capslib", "capslib.__main__"))
    assert top == [], f"modules outside the layers: {top}"


def test_no_import_circle():
    found = circles(graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_point_down():
    bad = upward_edges(graph())
    assert bad == [], "imports that point up or sideways:\n" + "\n".join(bad)


def test_the_checks_see_a_circle_and_an_upward_edge():
    g = {"capslib.model.a": [("capslib.views.b", 3)], "capslib.views.b": [("capslib.model.a", 7)]}
    assert circles(g) == [["capslib.model.a", "capslib.views.b"]]
    assert upward_edges(g) == ["capslib.model.a (line 3) -> capslib.views.b"]
    assert upward_edges({"capslib.run.x": [("capslib.detect.y", 1)]}) == ["capslib.run.x (line 1) -> capslib.detect.y"]


def test_modules_are_readable_in_one_sitting():
    lengths = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    longest = max(lengths, key=lengths.get)
    print(f"longest module: {longest}, {lengths[longest]} lines")
    over = {n: k for n, k in lengths.items() if k > MAX_LINES}
    assert over == {}, f"modules over {MAX_LINES} lines: {over}"


def test_the_package_imports_nothing_when_imported():
    """``capslib`` (which every layer may import for ``__version__``) loads its names lazily."""
    known = modules()
    assert imports_of("capslib", known["capslib"], known) == []


@pytest.mark.parametrize("name", ["capslib.book.sphinx_ext", "capslib.book.mystnb_plotly"])
def test_sphinx_plugins_import_nothing_of_capslib(name):
    known = modules()
    assert imports_of(name, known[name], known) == []
