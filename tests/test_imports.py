"""The import graph of the engine is the one docs/architecture.md draws: no cycle, and no
edge its module table ("may import") does not allow.

Every ``import`` of ``main.py``, ``main_8p.py``, ``classify/`` and ``models/`` is read with
``ast`` (at module level and inside functions alike: an import inside a function is still a
dependency), relative imports resolved, and kept when it names a module of this project.
"""

import ast
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "architecture.md"
SUBPACKAGES = re.compile(r"^(classify\.data|models\.[^.]+)$")  # their modules may import each other


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> Dict[str, Path]:
    files = [ROOT / "main.py", ROOT / "main_8p.py", *sorted((ROOT / "classify").rglob("*.py")),
             *sorted((ROOT / "models").rglob("*.py"))]
    return {_module_name(p): p for p in files if "test" not in p.relative_to(ROOT).parts[1:-1]}


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _target(name: str, modules: Dict[str, Path]) -> str:
    """The most specific project module ``name`` (dotted) is or lies in; "" when none."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def imports_of(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """The project modules ``name`` imports, anywhere in its file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(_target(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name, path)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                full = f"{base}.{alias.name}"
                out.add(full if full in modules else _target(base, modules))
    out.discard("")
    out.discard(name)
    return out


def import_graph() -> Dict[str, Set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def table_rules() -> List[Tuple[re.Pattern, bool, List[str]]]:
    """docs/architecture.md's module map: (pattern of the row's modules, exact?, may-import names)."""
    rows = []
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        allowed = re.findall(r"`([A-Za-z_][\w.]*(?:\.\*)?)`", cells[2])
        for path in re.findall(r"`([^`]+)`", cells[0]):
            if not path.endswith((".py", "/")):
                continue
            dotted = path.replace("<net>", "NET").removesuffix(".py").removesuffix("/").replace("/", ".")
            dotted = dotted.removesuffix(".__init__")
            pattern = re.escape(dotted).replace("NET", r"[^.]+")
            rows.append((re.compile(pattern + (r"$" if path.endswith(".py") else r"(\..+)?$")),
                         path.endswith(".py"), allowed))
    return rows


def _rule_for(name: str, rules):
    matches = [r for r in rules if r[0].match(name)]
    exact = [r for r in matches if r[1]]
    return (exact or matches or [None])[0]


def _allowed(target: str, names: List[str]) -> bool:
    for a in names:
        if a.endswith(".*") and target.startswith(a[:-1]):
            return True
        if target == a or target.startswith(a + "."):
            return True
    return False


def test_the_table_parses():
    rules = table_rules()
    assert len(rules) > 25  # the module map was found
    assert _rule_for("classify.check", rules) is not None


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], f"import cycles: {found}"


def test_every_module_is_in_the_table():
    rules = table_rules()
    missing = [name for name in project_modules() if _rule_for(name, rules) is None]
    assert missing == [], f"modules docs/architecture.md's module map does not list: {missing}"


def test_every_import_is_allowed_by_the_table():
    rules, modules = table_rules(), project_modules()
    bad = []
    for source, targets in sorted(import_graph().items()):
        rule = _rule_for(source, rules)
        for target in sorted(targets):
            same = _package(source, modules[source])
            if SUBPACKAGES.match(same) and _package(target, modules[target]) == same:
                continue  # inside classify/data/ or one models/<net>/ folder
            if rule is None or not _allowed(target, rule[2]):
                bad.append(f"{source} -> {target}")
    assert bad == [], "imports docs/architecture.md's module map does not allow:\n" + "\n".join(bad)


def test_the_checks_catch_what_they_are_for():
    """The cycle finder and the rule matcher themselves (a test that cannot fail proves nothing)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert _allowed("classify.data.index", ["classify.data"]) and _allowed("models.vgg16", ["models.*"])
    assert not _allowed("classify.report", ["classify.errors", "classify.distributed"])
    modules = project_modules()
    assert "classify.errors" in imports_of("classify.lock", modules["classify.lock"], modules)
    inside = imports_of("classify.rundir", modules["classify.rundir"], modules)  # inside a function
    assert "classify.checkpoint" in inside
