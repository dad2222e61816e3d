"""A copy of the tree with one more package added the way README says: one more
packaging/nfpm/*.yaml (and the files it names). The fast tests and the container test both
use it to show that nothing else in the toolkit has to change."""

from __future__ import annotations

import shutil
from pathlib import Path

from qss_toolkit import PROJECT_ROOT

EXTRA = "qmail-send-systemd-extra"
EXTRA_FILE = f"/usr/share/{EXTRA}/README"

CONFIG = f"""# A package added by a test: nothing in the toolkit names it.
name: {EXTRA}
arch: all
platform: linux
version: ${{QSS_VERSION}}
version_schema: none
release: "1"
changelog: generated/changelog.yml
section: mail
priority: optional
maintainer: qmail-send-systemd developers <qmail-send-systemd@users.noreply.github.com>
vendor: qmail-send-systemd
homepage: https://github.com/qmail-send-systemd/qmail-send-systemd
license: GPL-2.0-or-later
description: |-
  extra package of qmail-send-systemd, for the toolkit's tests
  This package stands for any package that a later change adds beside
  qmail-send-systemd: it carries one text file, depends on the main package of
  the same version, and is built, linted, installed and purged by the same
  toolkit without any change to it.
depends:
  - qmail-send-systemd (= ${{QSS_VERSION}}-1)
overrides:
  rpm:
    depends:
      - qmail-send-systemd = ${{QSS_VERSION}}
rpm:
  summary: An extra package of qmail-send-systemd, for the toolkit's tests
  group: System Environment/Daemons
  packager: qmail-send-systemd developers <qmail-send-systemd@users.noreply.github.com>
  buildhost: reproducible
contents:
  - src: packaging/extra/README
    dst: {EXTRA_FILE}
    file_info: {{mode: 0644}}
  - src: packaging/copyright
    dst: /usr/share/doc/{EXTRA}/copyright
    file_info: {{mode: 0644}}
    packager: deb
  - src: packaging/lintian/{EXTRA}
    dst: /usr/share/lintian/overrides/{EXTRA}
    file_info: {{mode: 0644}}
    packager: deb
  - src: packaging/copyright
    dst: /usr/share/licenses/{EXTRA}/copyright
    type: license
    file_info: {{mode: 0644}}
    packager: rpm
"""

LINTIAN = f"""# Built and published by its upstream, never uploaded to Debian: no ITP bug to close.
{EXTRA}: initial-upload-closes-no-bugs
"""


def make_tree(dest: Path) -> Path:
    """The project's packaging inputs copied to `dest`, plus the added package."""
    for rel in ("packaging", "units", "src/qmail_send_systemd", "debian", "rpm"):
        shutil.copytree(PROJECT_ROOT / rel, dest / rel)
    (dest / "packaging/nfpm" / f"{EXTRA}.yaml").write_text(CONFIG, encoding="utf-8")
    (dest / "packaging/extra").mkdir()
    (dest / "packaging/extra/README").write_text("Nothing to read.\n", encoding="utf-8")
    (dest / "packaging/lintian" / EXTRA).write_text(LINTIAN, encoding="utf-8")
    return dest
