"""The import graph of ``exporter``: no cycles, and no module imports one from a higher layer.

DESIGN §7: "the data flows one way: sources -> ingest -> core -> Report -> (catalogue ->
/metrics) and (actions). No module imports one above it; there are no import cycles." This
test holds the code to that. The graph is built statically (``ast`` over ``exporter/**/*.py``):
module-level imports, imports inside functions and ``if TYPE_CHECKING:`` imports all count, since
each is a dependency a reader has to follow (a local import that "works around" a cycle is
still a cycle). ``from package import name`` counts as importing ``package.name`` when that is a
module, else ``package``. Importing ``a.b`` is not counted as importing ``a``'s ``__init__``
(which Python runs first): a package's ``__init__`` that registers its submodules (``sources``)
is not a cycle with them.

The layers are declared below, lowest first, for the current flat layout. A module may import
modules of its own layer or lower ones. A new module must be given a layer here (the test fails
until it is), which is the moment to decide where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "exporter"

#: Lowest first. Each entry: (layer name, module names; ``x.*`` is every module of package x).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Values and pure functions every layer may use; they import nothing of the exporter.
    ("foundation", ("exporter", "exporter.foundation", "exporter.foundation.*", "exporter.stats", "exporter.stats.*",
                    "exporter.runtime.logs", "exporter.report.build_info")),
    # frozen typed config and its value parsers (durations, listen addresses)
    ("config", ("exporter.config", "exporter.config.*")),
    # the typed, immutable Report a cycle publishes, and the families it is rendered to: plain
    # values the core fills and everything above reads
    ("report values", ("exporter.report", "exporter.report.model", "exporter.report.snapshot")),
    # records -> columnar batches
    ("ingest", ("exporter.ingest", "exporter.ingest.*")),
    # where records come from; the package's __init__ is the registry of source types
    ("sources", ("exporter.sources", "exporter.sources.*")),
    # per-model and per-version state the cycle updates, and the state -> Report copy
    ("core", ("exporter.core", "exporter.core.classes", "exporter.core.joined_ids", "exporter.core.id_table",
              "exporter.core.arrival_buffer",
              "exporter.core.join",
              "exporter.core.windows", "exporter.core.reference", "exporter.core.drift_features",
              "exporter.core.drift_monitor",
              "exporter.core.versions", "exporter.core.source_stats", "exporter.core.recent",
              "exporter.core.reporting")),
    # one cycle: poll -> parse -> join -> update -> Report
    ("cycle", ("exporter.core.pipeline", "exporter.core.parse_ahead", "exporter.core.invalid_log")),
    # the metric names: Report -> families (above the cycle: the cycle knows no metric name)
    ("catalogue", ("exporter.report.catalogue",)),
    # readers of what was published
    ("output", ("exporter.http.scrape", "exporter.http.status_page")),
    ("http", ("exporter.http", "exporter.http.server", "exporter.http.basic_auth", "exporter.http.webconfig")),
    ("actions", ("exporter.actions", "exporter.actions.*")),
    # the running process: threads, reload, checkpoints, signals
    ("runtime", ("exporter.runtime", "exporter.runtime.*")),
    ("entry", ("exporter.cli", "exporter.demo", "exporter.__main__")),
)

#: Groups of modules that must not import one another, whatever their layers: parallel parts
#: that talk through what lies below them. Each source type stands alone (the registry and the
#: runtime above put them together); the actions (retraining, history) and the HTTP server are
#: parallel readers of the cycle's output (DESIGN §7: "(catalogue -> /metrics) and (actions)"),
#: so a receiver answers with ``foundation.http_messages.Response``, not the server's.
SIBLINGS: tuple[tuple[frozenset[str], ...], ...] = (
    (frozenset({"exporter.sources.file_tail"}), frozenset({"exporter.sources.http_poll"}),
     frozenset({"exporter.sources.kserve", "exporter.sources.kserve.cloudevents", "exporter.sources.kserve.payloads",
                "exporter.sources.kserve.source", "exporter.sources.forwarder", "exporter.sources.oip_binary"})),
    (frozenset({"exporter.actions.retrain", "exporter.actions.evidence", "exporter.actions.alertmanager"}),
     frozenset({"exporter.actions.history"}),
     frozenset({"exporter.http.server", "exporter.http.webconfig", "exporter.http.basic_auth",
                "exporter.http.scrape"})),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """Every ``exporter`` module ``path`` imports, at any depth of its syntax tree."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def layer_of(module: str) -> int | None:
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if module == m or (m.endswith(".*") and module.startswith(m[:-1])):
                return i
    return None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


# --- the checker itself, on made-up graphs (so a broken checker cannot pass everything) ------------


def test_cycle_finder_finds_cycles_and_only_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    assert sorted(find_cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}})) == [["a", "b"], ["c", "d"]]


def test_imports_are_found_at_every_depth(tmp_path: Path) -> None:
    src = ("from exporter.config import Config\n"
           "import exporter.ingest.records\n"
           "from exporter.sources import base\n"
           "from typing import TYPE_CHECKING\n"
           "if TYPE_CHECKING:\n    from exporter.core.pipeline import Pipeline\n"
           "def f():\n    from exporter.runtime.app import Exporter\n"
           "from . import windows\n")
    path = tmp_path / "x.py"
    path.write_text(src)
    modules = {"exporter.config", "exporter.ingest.records", "exporter.sources", "exporter.sources.base",
               "exporter.core.pipeline", "exporter.runtime.app", "exporter.windows", "exporter.x"}
    assert imports_of("exporter.x", path, modules) == {
        "exporter.config", "exporter.ingest.records", "exporter.sources.base", "exporter.core.pipeline",
        "exporter.runtime.app", "exporter.windows"}


# --- the exporter package -------------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in all_modules() if layer_of(m) is None)
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for module, deps in sorted(import_graph().items()):
        mine = layer_of(module)
        for dep in sorted(deps):
            theirs = layer_of(dep)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[theirs][0]})")
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_siblings_do_not_import_one_another() -> None:
    graph = import_graph()
    crossing = []
    for groups in SIBLINGS:
        for group in groups:
            assert group <= graph.keys(), f"SIBLINGS names modules that do not exist: {sorted(group - graph.keys())}"
            for module in sorted(group):
                for dep in sorted(graph[module]):
                    if any(dep in other for other in groups if other is not group):
                        crossing.append(f"{module} imports its sibling {dep}")
    assert not crossing, "\n".join(crossing)


@pytest.mark.parametrize(("low", "high"), [("exporter.stats.drift", "exporter.config"),
                                           ("exporter.sources.kserve", "exporter.http.server"),
                                           ("exporter.core.pipeline", "exporter.http.status_page"),
                                           ("exporter.report.model", "exporter.core.versions"),
                                           ("exporter.core.pipeline", "exporter.report.catalogue")])
def test_layers_are_ordered_as_declared(low: str, high: str) -> None:
    lo, hi = layer_of(low), layer_of(high)
    assert lo is not None and hi is not None and lo < hi


def test_runtime_knows_no_source_kind_by_name() -> None:
    """DESIGN §7 / issue 12: adding a source kind touches the registry, not the runtime. So
    ``exporter.runtime.app`` imports no concrete source module (file_tail, http_poll, kserve, nor their
    helpers), only the registry and the base class."""
    graph = import_graph()
    concrete = {m for m in graph if m.startswith("exporter.sources.") and m != "exporter.sources.base"}
    assert {"exporter.sources.file_tail", "exporter.sources.http_poll", "exporter.sources.kserve"} <= concrete
    assert "exporter.sources" in graph["exporter.runtime.app"]  # the check below looks at the real edges
    assert not graph["exporter.runtime.app"] & concrete, sorted(graph["exporter.runtime.app"] & concrete)
