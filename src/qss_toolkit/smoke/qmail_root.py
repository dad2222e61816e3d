"""Real qmail in every smoke root: notqmail 1.09 built from source as its documentation says.

A smoke root is cached in two layers (rootfs.py): the Debian root mmdebstrap makes, and on top
of it a copy with qmail built and installed, keyed on the base root's key, the source's pinned
digest and the steps below, so a warm run compiles nothing. The steps are an administrator's:
INSTALL.ids's Linux `groupadd`/`useradd` lines (ordinary accounts, uids from 1000 up), `make
setup check` (LWQ layout under /var/qmail, conf-qmail's default), `./config-fast HOSTNAME`, the
aliases of INSTALL.alias, `control/defaultdelivery` `./Maildir/` and alias's Maildir (mail to
root, postmaster and MAILER-DAEMON lands there). The build tools (gcc, libc6-dev, make, and
groff-base for `make man`, which `make setup` runs) are installed for the build and purged after
it, and the build fails unless the root's package set is then what it was before: the scenarios
see the root they saw without qmail, plus qmail.

The installed tree is also kept as a tar (PRISTINE): a scenario that needs qmail as it was just
installed (no queue, no control change, empty Maildirs) unpacks it over a removed /var/qmail.
"""

from __future__ import annotations

import shlex

from qss_toolkit.smoke import qmail_source

# control/me: one fixed name, so that the cached layer is the same for every run.
ME = "mail.qss.test"
SOURCE_DIR = "/usr/local/src"
STATE = "/var/lib/qss-qmail"  # the build's record and the pristine tree
PRISTINE = f"{STATE}/var-qmail.tar"
BUILD_TOOLS = ("gcc", "libc6-dev", "make", "groff-base")
QMAIL_USERS = ("alias", "qmaild", "qmaill", "qmailp", "qmailq", "qmailr", "qmails")
QMAIL_GROUPS = ("nofiles", "qmail")

# INSTALL.ids, "Solaris and Linux", as written.
INSTALL_IDS = (
    "groupadd nofiles",
    "useradd -g nofiles -d /var/qmail/alias alias",
    "useradd -g nofiles -d /var/qmail qmaild",
    "useradd -g nofiles -d /var/qmail qmaill",
    "useradd -g nofiles -d /var/qmail qmailp",
    "groupadd qmail",
    "useradd -g qmail -d /var/qmail qmailq",
    "useradd -g qmail -d /var/qmail qmailr",
    "useradd -g qmail -d /var/qmail qmails",
)
ALIASES = (".qmail-root", ".qmail-postmaster", ".qmail-mailer-daemon")

_PACKAGES = "dpkg-query -W -f '${Package} ${Version}\\n' | sort"
_NAMES = "dpkg-query -W -f '${Package}\\n' | sort"
_NAMES_BEFORE = f"cut -d' ' -f1 {STATE}/packages.before | sort > {STATE}/names.before"


def build_steps(me: str = ME) -> tuple[str, ...]:
    """The shell steps, each run in the root (systemd-nspawn --pipe, the host's network), with
    the verified archive already at SOURCE_DIR/ARCHIVE."""
    tools = " ".join(BUILD_TOOLS)
    build = f"{SOURCE_DIR}/{qmail_source.TOP}"
    aliases = " ".join(ALIASES)
    return (
        f"mkdir -p {STATE} && {_PACKAGES} > {STATE}/packages.before",
        # Only the tools the root lacks, so that purging them restores the package set.
        f"for p in {tools}; do dpkg-query -W -f='${{db:Status-Status}}' $p 2>/dev/null"
        f" | grep -qx installed || echo $p; done > {STATE}/build-tools",
        f"[ ! -s {STATE}/build-tools ] || {{ apt-get update -qq"
        f" && apt-get install -y -qq --no-install-recommends $(cat {STATE}/build-tools); }}",
        *INSTALL_IDS,
        f"cd {SOURCE_DIR} && tar -xzf {qmail_source.ARCHIVE} && cd {build} && make setup check",
        f"cd {build} && ./config-fast {shlex.quote(me)}",
        f"cd /var/qmail/alias && touch {aliases} && chmod 644 {aliases}",
        "echo ./Maildir/ > /var/qmail/control/defaultdelivery",
        "/var/qmail/bin/maildirmake /var/qmail/alias/Maildir"
        " && chown -R alias:nofiles /var/qmail/alias/Maildir",
        # Every package the tools brought (apt's autoremove keeps some of binutils' libraries).
        f"{_NAMES} > {STATE}/names.built && {_NAMES_BEFORE}"
        f" && comm -13 {STATE}/names.before {STATE}/names.built > {STATE}/added",
        f"[ ! -s {STATE}/added ] || apt-get purge -y -qq $(cat {STATE}/added)",
        "apt-get clean && rm -f /var/lib/apt/lists/*_Packages /var/lib/apt/lists/*_Release"
        " /var/lib/apt/lists/*_InRelease /var/cache/apt/*.bin",
        f"{_PACKAGES} > {STATE}/packages.after"
        f" && diff -u {STATE}/packages.before {STATE}/packages.after >&2",
        f"rm -rf {build} {SOURCE_DIR}/{qmail_source.ARCHIVE}",
        f"tar -C / -cpf {PRISTINE} var/qmail",
    )


def fresh_qmail_command() -> str:
    """Shell that puts qmail back as it was just installed (users and groups stay)."""
    return f"rm -rf /var/qmail && tar -C / -xpf {PRISTINE}"
