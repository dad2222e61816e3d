"""The project's version: read from its one source and checked against Debian and RPM rules."""

from __future__ import annotations

import ast
import re

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.errors import ConfigurationError

VERSION_SOURCE = PROJECT_ROOT / "src" / "qmail_send_systemd" / "__init__.py"

# Every package is the first packaging of its upstream version: Debian revision 1
# (1.0.0-1) and RPM Release 1 (1.0.0-1). nfpm's `release:` and the spec say the same.
RELEASE = "1"

# The intersection of what both formats accept as an upstream version: Debian (deb-version(7))
# allows [A-Za-z0-9.+~-] and must start with a digit; RPM forbids "-" in Version and treats "~"
# as a pre-release marker just like Debian. Keep to digits, letters, ".", "+" and "~" so that
# both package managers sort the versions the same way.
_VERSION_RE = re.compile(r"[0-9][A-Za-z0-9.+~]*")


def validate(version: str) -> str:
    """Return `version` if both Debian and RPM accept it, else raise ConfigurationError."""
    if not _VERSION_RE.fullmatch(version):
        raise ConfigurationError(
            f"version {version!r} is not valid for both Debian and RPM",
            hint="start with a digit and use only digits, letters, '.', '+' and '~' "
            f"in __version__ of {VERSION_SOURCE.relative_to(PROJECT_ROOT)}",
        )
    if ".." in version or version.endswith((".", "+", "~")):
        raise ConfigurationError(
            f"version {version!r} has an empty component",
            hint=f"fix __version__ in {VERSION_SOURCE.relative_to(PROJECT_ROOT)}",
        )
    return version


def read_version(source: str | None = None) -> str:
    """Read `__version__` without importing the helper (the build must not run its code)."""
    text = VERSION_SOURCE.read_text(encoding="utf-8") if source is None else source
    for node in ast.parse(text).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return validate(node.value.value)
    raise ConfigurationError(
        f"no __version__ = '...' string in {VERSION_SOURCE}",
        hint="define __version__ as a plain string literal",
    )
