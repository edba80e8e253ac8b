"""The locked environment: requirements/lock.txt must match pyproject.toml (offline, static, fast).

CI runs `make install` from the lock; without these checks an edited pyproject.toml would still
install the old tree, and nobody would notice until the numbers moved.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
TOOLS = REPO / "requirements" / "tools.txt"


def load_checker():
    """scripts/ is not a package: import scripts/check_lock.py by path, as the lock's CLI runs it."""
    spec = importlib.util.spec_from_file_location("check_lock", REPO / "scripts" / "check_lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_lock = load_checker()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of pyproject.toml and the lock that a test may edit."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(LOCK, tmp_path / "lock.txt")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}: update the test"
    path.write_text(text.replace(old, new, 1))


def test_committed_locks_match_pyproject():
    for lock in sorted((REPO / "requirements").glob("lock*.txt")):
        assert check_lock.check(REPO / "pyproject.toml", lock) == [], f"{lock.name}: run `make lock`"
    assert check_lock.check_tools(REPO / "pyproject.toml", TOOLS, LOCK) == []


def test_the_lock_has_the_torch_pair_this_machine_installs():
    pins = {p.name: p for p in check_lock.parse_lock(LOCK.read_text())[0]}
    assert (pins["torch"].version, pins["torchvision"].version) == ("2.14.1", "0.29.1")
    assert pins["torch"].marker is None
    # on Linux torch's CUDA libraries come with it, elsewhere (macOS, Windows: CPU builds) they are left out
    cuda = pins["nvidia-cublas"].marker
    for platform, machine, wanted in [
        ("linux", "x86_64", True),
        ("linux", "aarch64", True),
        ("darwin", "arm64", False),
    ]:
        assert cuda.evaluate({"sys_platform": platform, "platform_machine": machine}) is wanted


def test_a_pin_the_specifier_rejects_is_named(project: Path):
    edit(project / "pyproject.toml", '"torch==2.14.1"', '"torch>=2.15"')
    problems = check_lock.check(project / "pyproject.toml", project / "lock.txt")
    assert "torch: pyproject.toml asks for >=2.15 but lock.txt pins 2.14.1" in problems
    assert any("run `make lock`" in p for p in problems)


def test_a_new_dependency_missing_from_the_lock_is_named(project: Path):
    edit(project / "pyproject.toml", '"tabulate",', '"tabulate",\n    "polars>=1",')
    problems = check_lock.check(project / "pyproject.toml", project / "lock.txt")
    assert "polars: pyproject.toml asks for >=1 but lock.txt has no pin" in problems


def test_a_change_the_old_pins_still_satisfy_asks_for_a_relock(project: Path):
    """Dropping a dependency leaves every remaining pin valid; only the digest notices."""
    edit(project / "pyproject.toml", '    "tabulate",\n', "")
    assert [p for p in check_lock.check(project / "pyproject.toml", project / "lock.txt") if "make lock" in p]


def test_formatting_pyproject_is_no_change(project: Path):
    edit(project / "pyproject.toml", '"tabulate",', '"tabulate" ,')
    assert check_lock.check(project / "pyproject.toml", project / "lock.txt") == []


def test_unhashed_and_unpinned_lines_are_refused(project: Path):
    lock = project / "lock.txt"
    extra = "rich==15.0.0\nfoo>=1 --hash=sha256:00\n-e .\n--extra-index-url https://example.org/simple\n"
    lock.write_text(lock.read_text() + extra)
    problems = check_lock.check(project / "pyproject.toml", lock)
    assert any(p.startswith("rich==15.0.0: no --hash") for p in problems)
    assert any(p.startswith("foo: not pinned with ==") for p in problems)
    assert any(p.startswith("option line in a lock: '-e .'") for p in problems)
    assert len(problems) == 3  # an index line (a variant lock's torch index) is allowed


def test_this_environment_is_the_locked_one():
    """`make install` installed exactly the lock (pip freeze = lock, for the pins whose markers apply here)."""
    venv = REPO / ".venv"
    if Path(sys.prefix).resolve() != venv.resolve() or not (venv / ".installed").exists():
        pytest.skip("not running in this checkout's .venv (made by `make install`)")
    assert check_lock.check_installed(LOCK) == []
