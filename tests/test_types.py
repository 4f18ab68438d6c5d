"""The core is mypy clean under the ``[tool.mypy]`` settings of pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_core_is_mypy_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api", reason="mypy is not installed: pip install -e '.[test]'")
    monkeypatch.chdir(ROOT)  # the config's ``files`` and ``.mypy_cache`` are relative to the root
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert status == 0, f"mypy exited with {status}:\n{stdout}{stderr}"
    assert "Success: no issues found" in stdout, stdout
