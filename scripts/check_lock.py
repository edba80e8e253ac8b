"""Check that a hashed lock file (requirements/lock.txt) still matches pyproject.toml.

Usage (from the repository root):

    python scripts/check_lock.py [--pyproject pyproject.toml] [--lock requirements/lock.txt ...]
    python scripts/check_lock.py --digest        # print the digest that `make lock` writes into the lock
    python scripts/check_lock.py --installed     # compare the running environment with the lock

Why a static check: re-running the resolver needs the network and takes seconds to minutes, while
the questions CI must answer are cheap and offline. Is every dependency of the project (its
`dependencies` and the extras that `make install` installs) pinned with `==` at a version its
specifier accepts? Does every pin carry a `--hash`, so that pip runs in `--require-hashes` mode?
Was the lock made from the dependency lists pyproject.toml has now? The last one is answered by a
digest of those lists that scripts/lock.sh writes into the lock's header: any edit to them, even
one the old pins still satisfy (a removed or loosened dependency), asks for `make lock`.

Exit status 1 with one line per problem, each naming the package, what pyproject.toml asks for
and what the lock pins.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PYPROJECT = REPO / "pyproject.toml"
DEFAULT_LOCK = REPO / "requirements" / "lock.txt"
DEFAULT_TOOLS = REPO / "requirements" / "tools.txt"
# the extras `make install` installs (pip install '.[dev,diffusers,team]' before the lock)
LOCKED_EXTRAS = ("dev", "diffusers", "team")
DIGEST_PREFIX = "# pyproject-dependencies-sha256: "
# the options `uv pip compile --emit-index-url` writes; any other option line (-e, -r, ...) is refused
INDEX_OPTIONS = ("--index-url ", "--extra-index-url ", "--find-links ")


@dataclass(frozen=True)
class Pin:
    """One `name==version [; marker] --hash=...` entry of a lock file."""

    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]
    line: str


def read_pyproject(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def locked_inputs(pyproject: dict, extras: tuple[str, ...] = LOCKED_EXTRAS) -> dict:
    """The parts of pyproject.toml a lock is resolved from, normalised so that reformatting is no change."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})

    def norm(reqs: list[str]) -> list[str]:
        return sorted(str(Requirement(r)) for r in reqs)

    return {
        "requires-python": project.get("requires-python", ""),
        "dependencies": norm(project.get("dependencies", [])),
        "extras": {e: norm(optional.get(e, [])) for e in extras},
    }


def inputs_digest(pyproject: dict, extras: tuple[str, ...] = LOCKED_EXTRAS) -> str:
    blob = json.dumps(locked_inputs(pyproject, extras), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def project_requirements(pyproject: dict, extras: tuple[str, ...] = LOCKED_EXTRAS) -> list[Requirement]:
    inputs = locked_inputs(pyproject, extras)
    reqs = list(inputs["dependencies"])
    for extra in extras:
        reqs += inputs["extras"][extra]
    return [Requirement(r) for r in reqs]


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped, as pip reads a requirements file."""
    joined = re.sub(r"\\\n", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(" ".join(line.split()))
    return lines


def parse_lock(text: str) -> tuple[list[Pin], list[str]]:
    """The pins of a lock and the lines that are not exact, hashed pins (problems)."""
    pins: list[Pin] = []
    problems: list[str] = []
    for line in logical_lines(text):
        if line.startswith(INDEX_OPTIONS):
            continue  # where pip looks (a variant lock's torch index): no pin, nothing to check
        if line.startswith("-"):
            problems.append(f"option line in a lock: {line!r} (a lock holds only name==version pins)")
            continue
        head, *hash_parts = line.split(" --hash=")
        hashes = tuple(h.strip() for h in hash_parts)
        try:
            req = Requirement(head)
        except ValueError as err:
            problems.append(f"unreadable lock line {line!r}: {err}")
            continue
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version or req.url:
            problems.append(f"{req.name}: not pinned with == in the lock ({head!r})")
            continue
        if not hashes:
            problems.append(f"{req.name}=={specs[0].version}: no --hash in the lock (pip --require-hashes needs one)")
        pins.append(Pin(canonicalize_name(req.name), specs[0].version, req.marker, hashes, line))
    return pins, problems


def digest_in_lock(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX) :].strip()
    return None


def unmet(reqs: list[Requirement], pins: list[Pin], lock_name: str) -> list[str]:
    """Requirements with no pin in the lock, or a pin at a version their specifier does not accept."""
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    problems = []
    for req in reqs:
        found = by_name.get(canonicalize_name(req.name))
        spec = str(req.specifier) or "(any version)"
        if not found:
            problems.append(f"{req.name}: pyproject.toml asks for {spec} but {lock_name} has no pin")
            continue
        for pin in found:
            if not req.specifier.contains(Version(pin.version), prereleases=True):
                problems.append(f"{req.name}: pyproject.toml asks for {spec} but {lock_name} pins {pin.version}")
    return problems


def check(pyproject_path: Path, lock_path: Path, extras: tuple[str, ...] = LOCKED_EXTRAS) -> list[str]:
    """Every way the lock fails to match pyproject.toml, one message each; [] when it matches."""
    pyproject = read_pyproject(pyproject_path)
    text = lock_path.read_text()
    pins, problems = parse_lock(text)
    problems += unmet(project_requirements(pyproject, extras), pins, lock_path.name)
    recorded, wanted = digest_in_lock(text), inputs_digest(pyproject, extras)
    if recorded != wanted:
        problems.append(
            f"{lock_path.name} was resolved from other dependency lists than pyproject.toml has now "
            f"(digest {recorded or 'missing'}, now {wanted}): run `make lock`"
        )
    return problems


def check_tools(pyproject_path: Path, tools_path: Path, lock_path: Path) -> list[str]:
    """The tools lock: hashed pins that meet pyproject's build-system and agree with the main lock."""
    build = [Requirement(r) for r in read_pyproject(pyproject_path)["build-system"]["requires"]]
    tools, problems = parse_lock(tools_path.read_text())
    problems += unmet(build, tools, tools_path.name)
    locked = {p.name: p.version for p in parse_lock(lock_path.read_text())[0]}
    for pin in tools:
        if pin.name in locked and Version(locked[pin.name]) != Version(pin.version):
            other = f"{lock_path.name} {locked[pin.name]}"
            problems.append(f"{pin.name}: {tools_path.name} pins {pin.version}, {other}: run `make lock`")
    return problems


def check_installed(lock_path: Path) -> list[str]:
    """Pins of the lock that apply to this interpreter and are missing or at another version here."""
    pins, _ = parse_lock(lock_path.read_text())
    problems = []
    for pin in pins:
        if pin.marker is not None and not pin.marker.evaluate():
            continue
        try:
            have = metadata.version(pin.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{pin.name}: {lock_path.name} pins {pin.version}, not installed")
            continue
        if Version(have) != Version(pin.version):
            problems.append(f"{pin.name}: {lock_path.name} pins {pin.version}, installed {have}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyproject", type=Path, default=DEFAULT_PYPROJECT)
    parser.add_argument("--lock", type=Path, action="append", help="lock file(s); default requirements/lock.txt")
    parser.add_argument("--digest", action="store_true", help="print the digest of pyproject's dependency lists")
    parser.add_argument("--installed", action="store_true", help="compare this environment with the lock")
    args = parser.parse_args(argv)
    if args.digest:
        print(inputs_digest(read_pyproject(args.pyproject)))
        return 0
    problems = []
    for lock in args.lock or [DEFAULT_LOCK]:
        found = check_installed(lock) if args.installed else check(args.pyproject, lock)
        problems += [f"{lock}: {p}" for p in found]
    if not args.installed and not args.lock:
        problems += [f"{DEFAULT_TOOLS}: {p}" for p in check_tools(args.pyproject, DEFAULT_TOOLS, DEFAULT_LOCK)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
