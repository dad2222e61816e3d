"""Putting built package files into a smoke root, where its family's `install` finds them.

This is the one step of a package manager that needs a container, so it lives in the smoke
harness, one entry per family, and `families` writes command lines alone.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from qss_toolkit.families import Family, Files
from qss_toolkit.smoke.engines.base import Container

Stager = Callable[[Container, Files, Files, str], None]


def copy_each(container: Container, wanted: Files, built: Files, where: str) -> None:
    """apt-get installs .deb files from the root's file system: the wanted ones are copied."""
    for package in wanted:
        container.copy_into(package.path, f"{where}/{package.path.name}")


def local_repository(container: Container, wanted: Files, built: Files, where: str) -> None:
    """A dnf repository of every built package, made once per boot and build (a stamp
    names each file with its size and mtime), since every rpm scenario installs."""
    paths = sorted(f.path for f in built)
    stamp = "".join(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}\n" for p in paths)
    if container.run(["cat", f"{where}/.qss-stamp"], check=False).stdout == stamp:
        return
    container.run(["rm", "-rf", where])
    for path in paths:
        container.copy_into(path, f"{where}/{path.name}")
    container.run(["createrepo_c", "--quiet", where])
    container.run(f"cat > {shlex.quote(where)}/.qss-stamp", input=stamp)


STAGERS: dict[Family, Stager] = {Family.DEB: copy_each, Family.RPM: local_repository}


def stage(family: Family, container: Container, wanted: Files, built: Files, where: str) -> None:
    """Put the `wanted` ones of the `built` packages in the root at `where`."""
    STAGERS[family](container, wanted, built, where)
