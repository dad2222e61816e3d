"""What nfpm 2.48 writes into a .deb otherwise than dpkg-buildpackage does, rewritten after it
the way debhelper and dpkg-deb write it.

- changelog.Debian.gz: nfpm heads each entry with the binary package's name and writes the
  file with an empty owner name; dh_installchangelogs installs debian/changelog as it is (the
  source package's name in every binary package) and dpkg-deb records root:root.
- Symbolic links: nfpm records mode 0000, dpkg-deb 0777 (what lstat says on Linux).
- Installed-Size: nfpm sums the payload's bytes; dpkg-gencontrol counts each regular file and
  symbolic link in KiB rounded up and 1 KiB for each directory, the package's top and DEBIAN/
  and the maintainer scripts and conffiles in it included (not md5sums: dh_md5sums runs after
  dh_gencontrol).

The parity test (tests/test_native_vs_nfpm.py) compares the results with dpkg-buildpackage's.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import tarfile
from pathlib import Path

from qss_toolkit import payload

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


def _ar_members(data: bytes) -> list[tuple[bytes, bytes]]:
    """(header without its size field's meaning, content) of each member of an ar archive."""
    if not data.startswith(_AR_MAGIC):
        raise ValueError("not an ar archive")
    members, offset = [], len(_AR_MAGIC)
    while offset < len(data):
        header = data[offset : offset + _AR_HEADER]
        size = int(header[48:58].decode().strip())
        start = offset + _AR_HEADER
        members.append((header, data[start : start + size]))
        offset = start + size + (size % 2)
    return members


def _ar(members: list[tuple[bytes, bytes]]) -> bytes:
    out = [_AR_MAGIC]
    for header, content in members:
        out.append(header[:48] + f"{len(content):<10}".encode() + header[58:])
        out.append(content + (b"\n" if len(content) % 2 else b""))
    return b"".join(out)


def _gzip(data: bytes, mtime: int) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=mtime) as handle:
        handle.write(data)
    return buffer.getvalue()


def _retar(
    stream: bytes, change: dict[str, tuple[tarfile.TarInfo, bytes | None]]
) -> tuple[bytes, list[tarfile.TarInfo]]:
    """The gzipped tar `stream` with each member's (info, data) passed through `change`."""
    out = io.BytesIO()
    members = []
    with (
        tarfile.open(fileobj=io.BytesIO(stream), mode="r:gz") as old,
        tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as new,
    ):
        for original in old.getmembers():
            handle = old.extractfile(original) if original.isfile() else None
            content = handle.read() if handle is not None else None
            member = original
            if original.name in change:
                member, content = change[original.name]
            if member.issym():
                member.mode = 0o777
            if content is not None:
                member.size = len(content)
            new.addfile(member, io.BytesIO(content) if content is not None else None)
            members.append(member)
    return out.getvalue(), members


def installed_size(data: list[tarfile.TarInfo], control: list[tarfile.TarInfo]) -> int:
    """Installed-Size as dpkg-gencontrol computes it over the package's build directory."""
    size = 2  # the build directory itself and its DEBIAN/
    for member in data:
        if member.isfile():
            size += math.ceil(member.size / 1024)
        elif member.issym():
            size += math.ceil(len(member.linkname.encode()) / 1024)
        elif member.name.strip("./"):
            size += 1
    for member in control:
        # dh_gencontrol runs before dh_md5sums, and writes control itself.
        if member.isfile() and member.name.lstrip("./") not in ("control", "md5sums"):
            size += math.ceil(member.size / 1024)
    return size


def complete(path: Path, package: payload.Package, changelog: str, epoch: int) -> None:
    """Rewrite the nfpm-built .deb at `path`: `changelog` is debian/changelog's text."""
    members = _ar_members(path.read_bytes())
    names = [header[:16].decode().strip().rstrip("/") for header, _ in members]
    if names[1:] != ["control.tar.gz", "data.tar.gz"]:
        raise ValueError(f"{path.name}: unexpected members {names}")
    doc = "./" + payload.DEB_CHANGELOG.format(name=package.name).lstrip("/")
    info = tarfile.TarInfo(doc)
    info.mode, info.mtime, info.uid, info.gid = 0o644, epoch, 0, 0
    info.uname = info.gname = "root"
    compressed = _gzip(changelog.encode(), epoch)
    data_tar, data = _retar(members[2][1], {doc: (info, compressed)})
    digest = hashlib.md5(compressed).hexdigest()  # noqa: S324 - dpkg's md5sums format
    control_stream = members[1][1]
    with tarfile.open(fileobj=io.BytesIO(control_stream), mode="r:gz") as tar:
        ctrl = {m.name: m for m in tar.getmembers()}
        texts = {n: tar.extractfile(m).read() for n, m in ctrl.items() if m.isfile()}  # type: ignore[union-attr]
    md5sums = texts["./md5sums"].decode().splitlines()
    relative = doc[2:]
    md5sums = [f"{digest}  {relative}" if line.endswith(f"  {relative}") else line
               for line in md5sums]  # fmt: skip
    md5_info = ctrl["./md5sums"]
    md5_data = ("\n".join(md5sums) + "\n").encode()
    md5_info.size = len(md5_data)
    control_members = [m for m in ctrl.values() if m.name != "./md5sums"] + [md5_info]
    size = installed_size(data, control_members)
    control_text = texts["./control"].decode()
    control_text = "".join(
        f"Installed-Size: {size}\n" if line.startswith("Installed-Size:") else line
        for line in control_text.splitlines(True)
    )
    control_tar, _ = _retar(
        control_stream,
        {
            "./md5sums": (md5_info, md5_data),
            "./control": (ctrl["./control"], control_text.encode()),
        },
    )
    members[1] = (members[1][0], _gzip(control_tar, 0))
    members[2] = (members[2][0], _gzip(data_tar, 0))
    path.write_bytes(_ar(members))
