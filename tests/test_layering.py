"""The layering rule, checked on the source with ``ast`` (nothing of the package is imported).

Layers, bottom to top::

    core (recagent/, less recagent/cli) <- tools <- agents <- synth | rl | serve <- evaluation <- cli

A module may import only from its own part or from parts below it; synth, rl and serve are
siblings on one layer and may not import one another. Every ``import x`` and ``from x import y``
counts, at module level or inside a function (lazy imports, ``if TYPE_CHECKING:`` blocks), and
relative imports are resolved against the importing module's package.

Which folder is which part comes from pyproject.toml's ``[tool.setuptools] package-dir`` (the
folder that installs as ``recagent.<part>``); ``recagent.cli`` lives inside the core folder and is
its own part, the top one.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ROOT_PACKAGE = "recagent"
# part -> layer; a higher layer may import a lower one, a part may import itself, and two
# different parts on one layer (the siblings synth, rl, serve) may not import each other.
LAYER = {
    "core": 0,
    "tools": 1,
    "agents": 2,
    "synth": 3,
    "rl": 3,
    "serve": 3,
    "evaluation": 4,
    "cli": 5,
}
# sub-packages that are a part of their own although they sit in another part's folder
NESTED_PARTS = {"recagent.cli": "cli"}


def part_of_package(dotted: str) -> str | None:
    """The part a dotted module name belongs to (longest prefix wins); None if not ours."""
    prefixes = {ROOT_PACKAGE: "core", **NESTED_PARTS}
    prefixes.update({f"{ROOT_PACKAGE}.{p}": p for p in LAYER if p not in ("core", "cli")})
    best = None
    for prefix, part in prefixes.items():
        matches = dotted == prefix or dotted.startswith(prefix + ".")
        if matches and (best is None or len(prefix) > len(best[0])):
            best = (prefix, part)
    return best[1] if best else None


def allowed(importer: str, imported: str) -> bool:
    return importer == imported or LAYER[imported] < LAYER[importer]


def package_dirs(root: Path) -> dict[str, Path]:
    """``recagent.<part>`` -> folder, from pyproject.toml's package-dir mapping."""
    with open(root / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {pkg: root / folder for pkg, folder in mapping.items() if pkg.split(".")[0] == ROOT_PACKAGE}


def modules(root: Path) -> dict[str, Path]:
    """Every module's dotted name -> file, for every folder the package-dir mapping installs."""
    dirs = package_dirs(root)
    out: dict[str, Path] = {}
    for pkg, folder in dirs.items():
        # folders mapped to a deeper package are walked under that package, not this one
        nested = {d.resolve() for p, d in dirs.items() if p != pkg and p.startswith(pkg + ".")}
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if any(parent.resolve() in nested for parent in path.parents):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


@dataclass(frozen=True)
class Edge:
    module: str
    path: Path
    line: int
    target: str
    src_part: str
    dst_part: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} ({self.src_part}) imports {self.target} ({self.dst_part})"


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted target) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level - 1 > len(base_parts) - 1:
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top package")
                base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from recagent import tools` imports the part recagent.tools: judge each name as
            # base.name (for `from recagent.tools.x import f` that is still in recagent.tools)
            found.extend((node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names)
    return found


def violations(root: Path) -> list[Edge]:
    bad: list[Edge] = []
    for module, path in modules(root).items():
        src = part_of_package(module)
        if src is None:
            continue
        for line, target in imports_of(module, path):
            dst = part_of_package(target)
            if dst is not None and not allowed(src, dst):
                bad.append(Edge(module, path.relative_to(root), line, target, src, dst))
    return bad


def test_package_dir_covers_every_part():
    dirs = package_dirs(REPO)
    for part in LAYER:
        if part == "core":
            assert ROOT_PACKAGE in dirs
        elif f"{ROOT_PACKAGE}.{part}" not in NESTED_PARTS:
            assert f"{ROOT_PACKAGE}.{part}" in dirs, f"part {part} has no folder in pyproject's package-dir"
    for pkg in dirs:
        assert part_of_package(pkg) is not None, f"{pkg} is installed but belongs to no part of the layering"
    names = modules(REPO)
    assert "recagent.cli.app" in names and "recagent.tools.toolkit" in names and "recagent.rl.sft" in names


def test_no_import_breaks_the_layering():
    bad = violations(REPO)
    assert not bad, "imports against the layering rule:\n" + "\n".join(map(str, bad))


def _write(root: Path, rel: str, text: str = "") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    """A small tree with the real pyproject.toml and one clean module per part."""
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    for folder in ("recagent", "recagent/cli", *{p.relative_to(REPO).as_posix() for p in package_dirs(REPO).values()}):
        _write(tmp_path, f"{folder}/__init__.py")
    _write(tmp_path, "recagent/errors.py", "class E(Exception):\n    pass\n")
    _write(tmp_path, "tools/ok.py", "from recagent.errors import E\nimport json\n")
    _write(
        tmp_path, "evaluation/ok.py", "from recagent.rl import x\nfrom recagent.synth import y\nfrom ..serve import z\n"
    )
    _write(tmp_path, "recagent/cli/ok.py", "from recagent.evaluation import ok\nfrom .. import errors\n")
    return tmp_path


def test_checker_passes_a_clean_tree(fake_repo: Path):
    assert violations(fake_repo) == []


def test_checker_catches_wrong_imports(fake_repo: Path):
    _write(
        fake_repo,
        "rl/bad.py",
        "import os\n\n\ndef f():\n    from recagent.synth.tool_pool import ToolVariant\n    return ToolVariant\n",
    )
    _write(fake_repo, "tools/sub/bad.py", "from ...agents import agent\n")  # relative, two folders up
    _write(fake_repo, "recagent/bad.py", "import recagent.cli.app\n")
    _write(fake_repo, "serve/bad.py", "from recagent import evaluation\n")
    _write(fake_repo, "synth/bad.py", "if True:\n    from recagent.rl.sft import main\n")
    found = {(str(e.path), e.line, e.target, e.src_part, e.dst_part) for e in violations(fake_repo)}
    assert found == {
        ("rl/bad.py", 5, "recagent.synth.tool_pool.ToolVariant", "rl", "synth"),
        ("tools/sub/bad.py", 1, "recagent.agents.agent", "tools", "agents"),
        ("recagent/bad.py", 1, "recagent.cli.app", "core", "cli"),
        ("serve/bad.py", 1, "recagent.evaluation", "serve", "evaluation"),
        ("synth/bad.py", 2, "recagent.rl.sft.main", "synth", "rl"),
    }
