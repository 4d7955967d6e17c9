"""Packaging: the parts install under recagent.*, both editable and as a built wheel."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = {
    "recagent.tools": "tools",
    "recagent.agents": "agents",
    "recagent.synth": "synth",
    "recagent.rl": "rl",
    "recagent.evaluation": "evaluation",
    "recagent.serve": "serve",
}
PROBE = (
    "import importlib, importlib.util, json, sys;"
    "mods = ['recagent', 'recagent.cli', 'recagent.tools.data', 'recagent.tools.recommenders', 'recagent.tools.index',"
    " 'recagent.tools.recommender_tools', 'recagent.agents', 'recagent.synth', 'recagent.rl', 'recagent.evaluation', 'recagent.serve'];"
    "print(json.dumps({m: importlib.import_module(m).__file__ for m in mods}"
    " | {'top_level_tools': getattr(importlib.util.find_spec('tools'), 'origin', None)}))"
)


def _probe(cwd: Path, env_extra: dict[str, str] | None = None) -> dict[str, str]:
    import json
    import os

    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _declared_packages() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared():
    found = {
        "recagent"
        + ("." + ".".join(p.parent.relative_to(ROOT / "recagent").parts) if p.parent != ROOT / "recagent" else "")
        for p in (ROOT / "recagent").rglob("__init__.py")
    }
    for pkg, folder in PARTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((pkg, *rel)))
    found = {f for f in found if "__pycache__" not in f}
    assert found == _declared_packages()


def test_installed_package_maps_parts_to_folders(tmp_path):
    files = _probe(tmp_path)  # outside the repo: only the installed package can answer
    for pkg, folder in PARTS.items():
        mod = "recagent.tools.data" if pkg == "recagent.tools" else pkg
        path = Path(files[mod]).resolve()
        editable = path.is_relative_to(ROOT / folder)
        installed = path.parts[-3:-1] == ("recagent", folder) or path.parts[-4:-2] == ("recagent", folder)
        assert editable or installed, (mod, path)
    assert files["top_level_tools"] is None or not Path(files["top_level_tools"]).resolve().is_relative_to(ROOT)


@pytest.mark.slow
def test_built_wheel_installs_and_imports(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("recagent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("recagent/", "recagent-")) for n in names), [
        n for n in names if not n.startswith("recagent")
    ]
    for folder in ("tools", "agents", "synth", "rl", "evaluation", "serve", "cli"):
        assert f"recagent/{folder}/__init__.py" in names
    assert "recagent/serve/static/index.html" in names  # the chat page ships with the package
    assert "recagent/tools/data/readers.py" in names and "recagent/tools/index/vector_index.py" in names
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    assert not (target / "tools").exists()
    files = _probe(tmp_path, {"PYTHONPATH": str(target)})
    for mod, path in files.items():
        if mod != "top_level_tools":
            assert Path(path).resolve().is_relative_to(target.resolve()), (mod, path)
    assert files["top_level_tools"] is None
    script = target / "bin" / "recagent"
    assert script.is_file() or list(target.glob("recagent-*.dist-info/entry_points.txt"))
