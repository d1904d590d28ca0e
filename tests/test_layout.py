"""The test suite's own layout: shared code lives in tests/helpers.py and fixtures in conftest.py."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_another():
    """A test importing another test module runs that module's fixtures and collection side effects too."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name}:{node.lineno} imports {name}" for name in names
                      if name.startswith("tests.test_") or name.startswith("test_")]
    assert not found, "move what they share to tests/helpers.py or conftest.py:\n" + "\n".join(found)
