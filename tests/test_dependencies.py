"""Dependencies: floors without known advisories, and lock files (exact versions with hashes) that
cover every requirement of pyproject.toml, which `make install` and the image install from."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Versions below these have published advisories (Django: the newest 5.2 patch release when the
# floors were last raised).
FLOORS = {"django": "5.2.19", "djangorestframework": "3.15.2", "h11": "0.16"}


def _locked(name: str) -> dict[str, tuple[Version, list[str]]]:
    """{package: (pinned version, its hashes)} of a lock file."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / name).read_text())
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split(" --hash=")
        match = re.fullmatch(r"([A-Za-z0-9._\-\[\],]+)==(\S+)(?:\s*;.*)?", requirement.strip())
        assert match, f"{name}: not an exact pin: {line[:80]}"
        pins[canonicalize_name(match[1].split("[")[0])] = (Version(match[2]), options)
    return pins


def _requirements(*, dev: bool) -> list[Requirement]:
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    if dev:
        found += [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]]
    return found


def test_floors_exclude_versions_with_known_advisories():
    declared = {canonicalize_name(r.name): r.specifier for r in _requirements(dev=False)}
    for name, floor in FLOORS.items():
        assert name in declared, name
        below = (*Version(floor).release[:-1], Version(floor).release[-1] - 1)
        assert not declared[name].contains(".".join(map(str, below))), (name, declared[name])
        assert declared[name].contains(floor), (name, declared[name])


def test_each_lock_pins_every_requirement_within_pyproject_with_hashes():
    for lock, dev in [("requirements.lock", False), ("requirements-dev.lock", True)]:
        pins = _locked(lock)
        for requirement in _requirements(dev=dev):
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{lock} lacks {name}: run `make lock`"
            version, _hashes = pins[name]
            assert requirement.specifier.contains(version, prereleases=True), (lock, name, version)
        assert all(hashes for _version, hashes in pins.values()), lock
        for name, floor in FLOORS.items():
            assert pins[name][0] >= Version(floor), (lock, name)
    runtime, dev = _locked("requirements.lock"), _locked("requirements-dev.lock")
    # The image and the developers run the same versions of what both have.
    assert {n: v for n, (v, _h) in runtime.items()} == {
        n: v for n, (v, _h) in dev.items() if n in runtime
    }


def test_make_install_and_the_image_install_from_the_locks():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*--require-hashes -r \$\(DEV_LOCK\)", makefile)
    assert re.search(r"pip install .*--no-deps -e \.", makefile)
    assert re.search(r"^lock:", makefile, re.MULTILINE)
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
