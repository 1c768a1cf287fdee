"""The package layout is the architecture: each layer of pipeline/ imports only from the layers before it
(imports used only for type checking aside), and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module belongs to the layer of its longest matching prefix. The two registries (the
# methods and augment packages' __init__, and augment/base.py) sit with params, which validates students
# and augmentations against them; their method files load only when asked.
LAYERS = [
    ("shared", ["pipeline.__init__", "pipeline.errors", "pipeline.distributed", "pipeline.artifacts", "pipeline.tasks",
                "pipeline.text"]),
    ("models", ["pipeline.models"]),
    ("params", ["pipeline.params", "pipeline.methods.__init__", "pipeline.augment.__init__", "pipeline.augment.base"]),
    ("data", ["pipeline.data"]),
    ("training", ["pipeline.training"]),
    ("methods", ["pipeline.methods", "pipeline.augment"]),
    ("serving", ["pipeline.serving"]),
    ("report", ["pipeline.report"]),
    ("orchestration", ["pipeline.orchestration"]),
    ("entry points", ["pipeline.__main__", "stages"]),
]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for folder in ("pipeline", "stages") for p in sorted((ROOT / folder).rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name is (a package means its __init__), or None if it is not one."""
    for candidate in (name, f"{name}.__init__"):
        if candidate in modules:
            return candidate
    return None


def imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level) for every import of a file outside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            target = resolve(name, modules)
            if target is not None:
                found.append((target, node.lineno, id(node) in top))
    return found


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module}: in no layer of tests/test_layout.py (add it to one)"
    return best


def upward_imports(modules: dict[str, Path]) -> list[str]:
    found = []
    for module, path in modules.items():
        for target, line, _ in imports(path, modules):
            if layer_of(target) > layer_of(module):
                found.append(f"{path.relative_to(ROOT)}:{line}: {LAYERS[layer_of(module)][0]} imports "
                             f"{target} ({LAYERS[layer_of(target)][0]})")
    return found


def circles(modules: dict[str, Path]) -> list[list[str]]:
    """Groups of modules that import each other at module level (strongly connected, more than one)."""
    graph = {m: {t for t, _, top in imports(p, modules) if top and t != m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_no_layer_imports_a_later_one():
    assert upward_imports(project_modules()) == []


def test_no_import_circles():
    assert circles(project_modules()) == []


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path, monkeypatch):
    modules = project_modules()
    models = tmp_path / "pipeline" / "models" / "x.py"
    serving = tmp_path / "pipeline" / "serving" / "y.py"
    models.parent.mkdir(parents=True)
    serving.parent.mkdir(parents=True)
    models.write_text("from pipeline.serving.y import f\n")
    serving.write_text("from pipeline.models.x import g\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    fake = {"pipeline.models.x": models, "pipeline.serving.y": serving}
    assert upward_imports(fake) == ["pipeline/models/x.py:1: models imports pipeline.serving.y (serving)"]
    assert circles(fake) == [["pipeline.models.x", "pipeline.serving.y"]]
    assert modules  # the real tree was read before ROOT moved


@pytest.mark.parametrize("module", ["pipeline.params.config", "pipeline.methods.tinybert", "pipeline.methods.__init__",
                                    "stages.distill", "pipeline.text"])
def test_every_module_has_a_layer(module):
    assert module in project_modules()
    layer_of(module)


def test_serving_asks_the_model_kind_adapter_and_never_which_kind():
    """Export, runtimes, cards and predict reach a Transformer or a BiLSTM only through
    pipeline.serving.kinds: no other serving module names a kind or imports a kind's model code."""
    modules = project_modules()
    kind_code = {"pipeline.models.bilstm", "pipeline.models.hf", "pipeline.models.encoders"}
    found = []
    for module, path in modules.items():
        if not module.startswith("pipeline.serving.") or module == "pipeline.serving.kinds":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{module}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in ("hf", "bilstm")]
        found += [f"{module}:{line}: imports {target}" for target, line, _ in imports(path, modules)
                  if target in kind_code]
    assert found == []


METHOD_IMPORTS = ("pipeline.methods.__init__", "pipeline.methods.twostep", "pipeline.methods.recipes",
                  "pipeline.params.schema", "pipeline.training.losses", "pipeline.training.driver", "pipeline.models",
                  "pipeline.data.batches", "pipeline.artifacts", "pipeline.errors", "pipeline.tasks",
                  "pipeline.__init__", "pipeline.training.__init__", "pipeline.data.__init__", "pipeline.params.__init__")


def test_method_files_import_only_what_docs_extending_lists():
    """docs/extending.md ("What a method file imports") lists these modules; a method file needs no more."""
    modules = project_modules()
    methods = [m for m in modules if m.startswith("pipeline.methods.")
               and m.rsplit(".", 1)[1] not in ("__init__", "twostep", "recipes")]
    assert "pipeline.methods.tinybert" in methods
    found = [f"{m}:{line}: {target}" for m in methods for target, line, _ in imports(modules[m], modules)
             if not any(target == allowed or target.startswith(allowed + ".") for allowed in METHOD_IMPORTS)]
    assert found == []
    listed = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8").split("### What a method file imports")[1]
    for allowed in METHOD_IMPORTS:
        name = allowed.removesuffix(".__init__")
        if name.count("."):
            assert f"`{name}" in listed, f"{name}: allowed here but not listed in docs/extending.md"
