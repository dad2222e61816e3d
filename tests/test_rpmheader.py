"""rpmheader rewrites an RPM's main header the way rpm lays it out, with digests rpm accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from qss_toolkit import rpmheader
from qss_toolkit.errors import CheckFailed

SPEC = """Name: t
Version: 1
Release: 1
Summary: t
License: MIT
BuildArch: noarch
Requires: coreutils
%description
t
%post
echo post
%files
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package as rpmbuild makes it (nfpm's are covered by the parity test)."""
    if not shutil.which("rpmbuild"):
        pytest.skip("rpmbuild is not installed")
    top = tmp_path_factory.mktemp("rpm")
    (top / "t.spec").write_text(SPEC, encoding="utf-8")
    subprocess.run(
        ["rpmbuild", "--quiet", "--define", f"_topdir {top}", "-bb", str(top / "t.spec")],
        check=True,
        capture_output=True,
    )
    return top / "RPMS" / "noarch" / "t-1-1.noarch.rpm"


def _query(path: Path, fmt: str) -> str:
    return subprocess.run(
        ["rpm", "-qp", "--nosignature", "--qf", fmt, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _checksig(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rpm", "-K", "--nosignature", str(path)], capture_output=True, text=True, check=False
    )


def test_an_unchanged_package_is_written_back_byte_for_byte(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "same.rpm"
    rpmheader.read(built).write(out)
    assert out.read_bytes() == built.read_bytes()


def test_a_changed_header_keeps_valid_digests(built: Path, tmp_path: Path) -> None:
    pkg = rpmheader.read(built)
    pkg.set(rpmheader.string_entry(rpmheader.SOURCERPM, ["other-1-1.src.rpm"], rpmheader.STRING))
    names = pkg.get(rpmheader.REQUIRENAME)
    assert names is not None
    pkg.set(rpmheader.string_entry(rpmheader.REQUIRENAME, ["util-linux", *names.strings()[1:]]))
    out = tmp_path / "changed.rpm"
    pkg.write(out)
    check = _checksig(out)
    assert check.returncode == 0 and check.stdout.endswith("digests OK\n"), check.stdout
    assert _query(out, "%{SOURCERPM}") == "other-1-1.src.rpm"
    assert _query(out, "[%{REQUIRENAME}\n]").splitlines()[0] == "util-linux"
    assert _query(out, "%{POSTIN}") == "echo post"  # the payload and other tags are untouched


def test_the_digests_are_checked_at_all(built: Path, tmp_path: Path) -> None:
    """The control for the test above: a header changed behind the digests' back fails."""
    data = bytearray(built.read_bytes())
    at = data.index(b"t-1-1.src.rpm")
    data[at] = ord("u")
    broken = tmp_path / "broken.rpm"
    broken.write_bytes(bytes(data))
    assert _checksig(broken).returncode != 0


def test_a_signed_package_is_refused(built: Path, tmp_path: Path) -> None:
    pkg = rpmheader.read(built)
    pkg.signature.append(rpmheader.Entry(268, rpmheader.BIN, 4, b"sign"))  # RSAHEADER
    signed = tmp_path / "signed.rpm"
    pkg.write(signed)
    with pytest.raises(CheckFailed, match="is signed"):
        rpmheader.read(signed)


def test_a_file_that_is_no_rpm_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "x.rpm"
    other.write_bytes(b"!<arch>\n" + b"\0" * 200)
    with pytest.raises(CheckFailed, match="is not an RPM package"):
        rpmheader.read(other)
