"""What the roots install, as packaging/nfpm/*.yaml says (qss_toolkit.targets)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from qss_toolkit import payload
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.smoke import targets


@dataclass(frozen=True)
class Declared:
    """A package as payload.py gives it, reduced to its name and dependencies."""

    name: str
    deb: tuple[str, ...]
    rpm: tuple[str, ...]

    def relation(self, fmt: Family, kind: str, version: str) -> tuple[str, ...]:
        assert kind == "depends"
        return self.deb if fmt is Family.DEB else self.rpm


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Declared]]:
    packages: list[Declared] = []
    monkeypatch.setattr(payload, "project_packages", lambda: tuple(packages))
    targets.dependency_packages.cache_clear()
    yield packages
    targets.dependency_packages.cache_clear()


def test_a_root_installs_the_first_alternative_of_a_dependency(declared: list[Declared]) -> None:
    declared += [
        Declared("ours", ("python3 (>= 3.9)", "systemd"), ("python3 >= 3.9", "systemd")),
        Declared(
            "ours-mail",
            ("ours (= 0-1)", "msmtp | msmtp-mta", "default-mta | mail-transport-agent"),
            ("ours = 0", "msmtp", "MTA"),
        ),
    ]
    assert targets.dependency_packages() == ("default-mta", "msmtp", "python3", "systemd")
    assert targets.dependency_packages(Family.RPM) == ("MTA", "msmtp", "python3", "systemd")
    assert ("default-mta", "MTA") in targets.dependency_pairs()


def test_a_dependency_missing_in_one_format_is_an_error_naming_the_file(
    declared: list[Declared],
) -> None:
    declared.append(Declared("ours-nm", ("network-manager",), ()))
    with pytest.raises(ConfigurationError, match=r"ours-nm\.yaml: 1 Debian dependencies, 0 RPM"):
        targets.dependency_packages()


def test_the_roots_and_images_hold_what_the_hook_packages_depend_on() -> None:
    """Listed once, in the packages' YAML: the Debian roots, the host-provides package of the
    RPM-on-Debian root and the RPM images follow from it."""
    hooks = [
        p for p in payload.project_packages() if p.name.endswith(("-networkd", "-networkmanager"))
    ]
    assert len(hooks) == 2
    for hook in hooks:
        [deb] = [d for d in hook.relation(Family.DEB, "depends", "0") if "qmail" not in d]
        [rpm] = [d for d in hook.relation(Family.RPM, "depends", "0") if "qmail" not in d]
        assert deb in targets.TARGETS["debian-12"].root.packages
        assert (deb, rpm) in targets.HOST_PROVIDES
        assert rpm in targets.RPM_IMAGE_PACKAGES
