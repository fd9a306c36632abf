"""The layout is the architecture: commands are thin and never import one another, the model libraries never
import the harness, modules stay small, and nothing tracked points outside the repository."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted((ROOT / "benchmarks" / "commands").glob("*.py"))
MAX_LINES = 600


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def test_there_is_one_command_module_per_subcommand():
    from benchmarks.cli import COMMANDS as TABLE

    assert {f"{module}.py" for module, _ in TABLE.values()} | {"__init__.py"} == {p.name for p in COMMANDS}


@pytest.mark.parametrize("path", COMMANDS, ids=[p.stem for p in COMMANDS])
def test_no_command_imports_another(path):
    others = {f"benchmarks.commands.{p.stem}" for p in COMMANDS if p != path and p.stem != "__init__"}
    assert not (imported_modules(path) & others), f"{path.name} imports a command module: {imported_modules(path) & others}"
    assert not any(m.startswith("benchmarks.cli") for m in imported_modules(path))


def test_library_modules_never_import_commands_or_the_cli():
    for path in (ROOT / "benchmarks").rglob("*.py"):
        if path.parent.name == "commands" or path.name == "cli.py":
            continue
        bad = {m for m in imported_modules(path) if m.startswith(("benchmarks.commands", "benchmarks.cli"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("package", ["sigma", "detectors"])
def test_model_libraries_never_import_the_harness(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = {m for m in imported_modules(path) if m.split(".")[0] == "benchmarks"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_modules_stay_small():
    big = {str(p.relative_to(ROOT)): n for package in ("benchmarks", "sigma", "detectors")
           for p in (ROOT / package).rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules past {MAX_LINES} lines (split them): {big}"


def _tracked_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True,
                               timeout=60).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    return [ROOT / n for n in names]


TEXT = (".py", ".md", ".yaml", ".yml", ".json", ".jsonl", ".csv", ".toml", ".txt", ".sh", ".cfg")


def test_no_tracked_file_points_outside_the_repository():
    # the prefixes are spelled in pieces so that this file does not contain what it looks for
    pattern = re.compile("|".join(re.escape(prefix + "shared") for prefix in ("../", "/" + "work" + "/")))
    bad = [str(p.relative_to(ROOT)) for p in _tracked_files()
           if p.suffix in TEXT and p.is_file() and pattern.search(p.read_text(encoding="utf-8", errors="ignore"))]
    assert not bad, f"files that refer outside the repository: {bad}"


def test_committed_results_record_no_machine_paths():
    # records a run writes (JSON, YAML, CSV, Markdown); logs of other machines (*.txt) say where they are from
    pattern = re.compile(r"[\"'\s(`](/tmp/|/work/|/home/|/root/|/Users/)")
    bad = [str(p.relative_to(ROOT)) for p in _tracked_files()
           if p.parts[len(ROOT.parts)] == "results" and p.suffix in (".json", ".yaml", ".csv", ".md") and p.is_file()
           and pattern.search(p.read_text(encoding="utf-8", errors="ignore"))]
    assert not bad, f"committed results with absolute paths of the machine that made them: {bad}"


def test_no_tracked_symlink():
    # a committed link (a worktree's .venv -> the main checkout's) replaces the real folder on checkout
    links = [str(p.relative_to(ROOT)) for p in _tracked_files() if p.is_symlink()]
    assert not links, f"tracked symbolic links (git rm --cached them): {links}"
