"""What a user's installation carries: type markers, licence, version."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import zarrsample_core

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["zarrsample_core", "zarrsample_torch", "zarrsample_tf", "zarrsample_jax"])
def test_every_package_is_marked_typed_and_ships_the_marker(package):
    assert importlib.resources.files(package).joinpath("py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["*"]


def test_the_licence_file_matches_the_declared_licence():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["license"] == {"text": "BSD-3-Clause"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "Neither the name of the copyright holder" in text


def test_the_version_comes_from_the_package_metadata():
    assert zarrsample_core.__version__ == importlib.metadata.version("zarrsample")
    out = subprocess.run([sys.executable, "-m", "zarrsample_core", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"zarrsample {zarrsample_core.__version__}"


def test_the_changelog_names_the_current_version():
    assert f"## {zarrsample_core.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_extras_state_ranges_and_the_demo_needs_no_extra():
    """Exact pins belong in constraints.txt; Pillow (previews, pictures) is a core dependency."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = config["project"]["optional-dependencies"]
    assert not [r for name in ("torch", "tf", "jax", "wsi") for r in extras[name] if "==" in r]
    assert any(r.lower().startswith("pillow") for r in config["project"]["dependencies"])
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
