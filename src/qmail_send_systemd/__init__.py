"""qmail-send-systemd: the helper that runs qmail-send as a systemd service (stdlib only)."""

# The one source of the project's version: pyproject.toml, nfpm, debian/changelog and the
# RPM spec all read it from here (see qss_toolkit.version).
__version__ = "1.2.0"

# qmail's home, relative to the root the helper looks at (/ or --root / $DPKG_ROOT).
QMAIL_HOME = "var/qmail"
