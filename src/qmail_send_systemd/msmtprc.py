"""msmtp's configuration as setup writes it: where it is, and how its values are read back.

A leaf, importing nothing (the submission qmail-remote loads it at every delivery): submission,
submission_config, oauth and oauth_setup read the file with it.
"""

from __future__ import annotations

# msmtp's configuration, written by `setup --tls`: the only file that holds the password
# (msmtp refuses such a file unless its reader, qmailr, owns it and nobody else may read it).
CONFIG = "/etc/qmail-send-systemd/msmtprc"
ACCOUNT = "qmail-send-systemd"


def unquote(value: str) -> str:
    """An msmtprc argument: msmtp strips one pair of enclosing double quotes, nothing else."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def read_config(path: str) -> dict[str, str]:
    """The first value of each command in the msmtprc that setup wrote."""
    values: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            key, _, value = line.strip().partition(" ")
            if key and not key.startswith("#"):
                values.setdefault(key, unquote(value.strip()))
    return values
