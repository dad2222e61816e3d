"""A copy of the tree with one more package added the way README says: one more
packaging/nfpm/*.yaml (and the files it names), then `python -m qss_toolkit distro-files`
to write what follows from it into the committed debian/ and spec. The fast tests and the
container test both use it to show that nothing else in the toolkit has to change."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.build import sources

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
      - qmail-send-systemd = ${{QSS_VERSION}}-1
rpm:
  summary: An extra package of qmail-send-systemd, for the toolkit's tests
  buildhost: reproducible
deb:
  fields:
    Source: qmail-send-systemd
contents:
  - src: packaging/extra/README
    dst: {EXTRA_FILE}
    file_info: {{mode: 0644}}
  - src: packaging/copyright
    dst: /usr/share/doc/{EXTRA}/copyright
    file_info: {{mode: 0644}}
    packager: deb
  - src: COPYING
    dst: /usr/share/licenses/{EXTRA}/COPYING
    type: license
    file_info: {{mode: 0644}}
    packager: rpm
"""


def make_tree(dest: Path) -> Path:
    """The project's packaging inputs copied to `dest`, plus the added package, every file
    tracked by git (the source packages hold what git tracks)."""
    for rel in ("packaging", "units", "src/qmail_send_systemd", "debian", "rpm"):
        shutil.copytree(
            PROJECT_ROOT / rel, dest / rel, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copyfile(PROJECT_ROOT / "COPYING", dest / "COPYING")
    (dest / "packaging/nfpm" / f"{EXTRA}.yaml").write_text(CONFIG, encoding="utf-8")
    (dest / "packaging/extra").mkdir()
    (dest / "packaging/extra/README").write_text("Nothing to read.\n", encoding="utf-8")
    sources.write_derived(dest)
    git = ["git", "-c", "safe.directory=*", "-C", str(dest)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    return dest
