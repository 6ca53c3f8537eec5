"""Every metric name is spelled in one module, the catalogue (issue 12, DESIGN §7).

A string literal that is a metric name (``"mlmon_..."``, or an f-string that starts with it)
anywhere else in ``exporter/`` means some module builds or reads metrics by name again, the loop
from the output back into domain logic that the typed Report removed. Prose (docstrings and
comments) may name metrics freely.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"
CATALOGUE = PACKAGE / "report" / "catalogue.py"
METRIC_NAME = re.compile(r"^mlmon_[a-z0-9_]+$")


def metric_names_spelled(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in ``source`` that is a metric name or starts an
    f-string with one; docstrings are prose and do not count."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and str(head.value).startswith("mlmon_"):
                found.append((node.lineno, f"f-string {str(head.value)!r}..."))
            for part in node.values:  # the parts of an f-string are Constants too: not names alone
                docstrings.add(id(part))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and METRIC_NAME.match(node.value)):
            found.append((node.lineno, node.value))
    return sorted(found)


def test_the_checker_finds_names_and_ignores_prose() -> None:
    source = ('"""Module prose may say mlmon_accuracy_ratio."""\n'
              'def f(x):\n'
              '    """mlmon_predictions_total in a docstring is prose."""\n'
              '    a = "mlmon_accuracy_ratio"  # a comment may say mlmon_x too\n'
              '    b = f"mlmon_window_{x}"\n'
              '    c = f"window {x}: mlmon_y"\n'
              '    return "not a metric: mlmon_accuracy_ratio is low"\n')
    assert metric_names_spelled(source) == [(4, "mlmon_accuracy_ratio"), (5, "f-string 'mlmon_window_'...")]


def test_only_the_catalogue_spells_metric_names() -> None:
    elsewhere = {str(path.relative_to(PACKAGE.parent)): names
                 for path in sorted(PACKAGE.rglob("*.py")) if path != CATALOGUE
                 if (names := metric_names_spelled(path.read_text()))}
    assert not elsewhere, f"metric names outside report/catalogue.py: {elsewhere}"


def test_the_catalogue_does_spell_them() -> None:
    """The check above is not vacuous: the catalogue's names are found by the same checker."""
    names = {text for _, text in metric_names_spelled(CATALOGUE.read_text())}
    assert {"mlmon_accuracy_ratio", "mlmon_data_drift_psi", "mlmon_retraining_requests"} <= names
