"""The repository signing key: read from the environment, held in a throwaway GNUPGHOME.

The private key and its passphrase never reach a command line, a log line, or the repository:
the key travels through gpg's stdin into a temporary GNUPGHOME (mode 0700, deleted on exit), and
the passphrase is preset into that home's own gpg-agent (`gpg-preset-passphrase`, stdin), so that
every signing command after that -- gpg and rpmsign alike -- runs with `--batch` and no secret.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from qss_toolkit import settings
from qss_toolkit.errors import CommandFailed, ConfigurationError
from qss_toolkit.run import Arg, require, run

log = logging.getLogger("qss_toolkit")

ENV_KEY_ID = settings.SIGNING_KEY_ID
ENV_KEY_FILE = settings.SIGNING_KEY_FILE
ENV_KEY = settings.SIGNING_KEY
ENV_EPHEMERAL = settings.SIGNING_KEY_EPHEMERAL  # "1": what --ephemeral-key does (./run-tests)
ENV_PASSPHRASE = settings.SIGNING_KEY_PASSPHRASE

# Digest for every signature we make: apt >= 2.7 (sqv) and rpm >= 4.18 refuse SHA-1.
DIGEST = "SHA512"


@dataclass(frozen=True)
class KeyConfig:
    """Where the signing key comes from (the environment, or a throwaway key for tests)."""

    key_id: str | None = None
    key_file: Path | None = None
    key_text: str | None = field(default=None, repr=False)  # an armored key (QSS_SIGNING_KEY)
    passphrase: str | None = field(default=None, repr=False)
    ephemeral: bool = False

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, ephemeral: bool = False
    ) -> KeyConfig:
        given = settings.Settings.from_env(env)
        key_id, key_file = given.signing_key_id, given.signing_key_file
        passphrase = given.signing_key_passphrase
        ephemeral = ephemeral or given.signing_key_ephemeral
        key_text = given.signing_key
        if key_id is None and key_file is None and key_text is None and not ephemeral:
            raise ConfigurationError(
                f"no signing key configured: set {ENV_KEY_ID} (a key in your gpg keyring),"
                f" {ENV_KEY_FILE} (an armored private key file) or {ENV_KEY} (the armored key"
                f" itself, from a CI secret), and {ENV_PASSPHRASE} if it has one",
                hint=f"export {ENV_KEY_ID}=<fingerprint> (tests: --ephemeral-key)",
            )
        if key_file is not None and not key_file.is_file():
            raise ConfigurationError(
                f"{ENV_KEY_FILE}={key_file} is not a readable file",
                hint="point it at an armored private key (gpg --armor --export-secret-keys KEYID)",
            )
        return cls(key_id, key_file, key_text, passphrase, ephemeral=ephemeral)

    def describe(self) -> str:
        if self.key_text is not None:
            return f"{ENV_KEY} (an armored key in the environment)"
        if self.key_file is not None:
            return f"{ENV_KEY_FILE}={self.key_file}"
        if self.key_id is not None:
            return f"{ENV_KEY_ID}={self.key_id}"
        return "a throwaway key generated for this run"


def _gpg(home: Path, *args: Arg, input: str | None = None, capture: bool = True) -> str:
    """Run gpg non-interactively on `home`; return its stdout.

    Without an explicit --pinentry-mode, gpg is told never to prompt: a key that needs a passphrase
    nobody gave fails at once instead of waiting for a pinentry that no one will answer.
    """
    pinentry: list[Arg] = [] if "--pinentry-mode" in args else ["--pinentry-mode", "error"]
    result = run(
        ["gpg", "--homedir", home, "--batch", "--no-tty", "--quiet", *pinentry, *args],
        input=input,
        capture=capture,
        env={"GNUPGHOME": os.fspath(home)},
    )
    return result.stdout or ""


def _gpg_with_passphrase(home: Path, passphrase: str | None, *args: Arg) -> str:
    """`_gpg` for the commands that need the key's passphrase: it goes through gpg's stdin."""
    return _gpg(
        home,
        "--pinentry-mode",
        "loopback",
        "--passphrase-fd",
        "0",
        *args,
        input=(passphrase or "") + "\n",
    )


def _new_home(prefix: str) -> Path:
    # mkdtemp makes it 0700, which gpg insists on; /tmp keeps the agent's socket path short
    # (a long GNUPGHOME under a deep build directory overflows sun_path).
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    # s2k-count: the agent keeps the imported key protected with the passphrase and derives the
    # key from it again for every signature; its calibrated count costs ~0.3 s of CPU each (a
    # repository publish makes several). The lowest count protects nothing less here: this
    # home is root's, 0700, lives as long as the run, and the passphrase itself sits preset in
    # this agent and in the caller's environment.
    (home / "gpg-agent.conf").write_text(
        "allow-preset-passphrase\nallow-loopback-pinentry\ndefault-cache-ttl 86400\n"
        "max-cache-ttl 86400\ns2k-count 65536\n",
        encoding="utf-8",
    )
    return home


def _remove_home(home: Path) -> None:
    run(["gpgconf", "--homedir", home, "--kill", "all"], check=False, capture=True)
    shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class SecretKey:
    fingerprint: str
    keygrips: tuple[str, ...]
    can_sign: bool
    uid: str


def _secret_keys(home: Path, selector: str | None = None) -> list[SecretKey]:
    args: list[Arg] = ["--with-colons", "--with-keygrip", "--list-secret-keys"]
    if selector:
        args.append(selector)
    try:
        out = _gpg(home, *args)
    except CommandFailed:
        return []
    keys: list[SecretKey] = []
    owner = ""
    # Colon records: "sec" opens a key, "ssb" a subkey; "fpr" and "grp" follow the record they
    # describe. Field 12 of "sec" holds the whole key's usable capabilities in capitals.
    for line in out.splitlines():
        fields = line.split(":")
        kind = fields[0]
        if kind == "sec":
            keys.append(SecretKey("", (), "S" in (fields[11] if len(fields) > 11 else ""), ""))
            owner = "sec"
        elif kind == "ssb":
            owner = "ssb"
        elif not keys:
            continue
        elif kind == "fpr" and owner == "sec" and not keys[-1].fingerprint:
            keys[-1] = replace(keys[-1], fingerprint=fields[9])
        elif kind == "grp":
            keys[-1] = replace(keys[-1], keygrips=(*keys[-1].keygrips, fields[9]))
        elif kind == "uid" and not keys[-1].uid:
            keys[-1] = replace(keys[-1], uid=fields[9])
    return keys


def generate_throwaway_key(
    dest: Path,
    *,
    name: str = "qmail-send-systemd throwaway test key",
    passphrase: str | None = None,
    expire: str = "1d",
) -> tuple[Path, str]:
    """Generate an RSA signing key valid for `expire` (gpg's syntax); write it armored to `dest`.

    Returns (dest, fingerprint). For tests and smoke runs: never a key to publish with.
    """
    home = _new_home("qss-gen-")
    try:
        _gpg_with_passphrase(
            home,
            passphrase,
            "--quick-generate-key",
            f"{name} <throwaway@invalid>",
            "rsa3072",
            "sign",
            expire,
        )
        keys = _secret_keys(home)
        if len(keys) != 1:
            raise CommandFailed(f"gpg generated {len(keys)} keys, expected 1")
        armored = _gpg_with_passphrase(
            home, passphrase, "--armor", "--export-secret-keys", keys[0].fingerprint
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(armored)
        return dest, keys[0].fingerprint
    finally:
        _remove_home(home)


@dataclass
class Signer:
    """A signing key ready to use in its own GNUPGHOME; create it with `signer(config)`."""

    home: Path
    key: SecretKey
    source: str

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    def export_public(self, dest: Path, *, armor: bool) -> Path:
        """Write the public key: binary for apt's Signed-By, armored for rpm --import / gpgkey=."""
        args: list[Arg] = ["--export-options", "export-minimal", "--output", dest]
        if armor:
            args.append("--armor")
        if dest.exists():
            dest.unlink()
        _gpg(self.home, *args, "--export", self.fingerprint)
        return dest

    def clearsign(self, src: Path, dest: Path) -> Path:
        return self._sign("--clearsign", src, dest, armor=False)

    def detach_sign(self, src: Path, dest: Path, *, armor: bool = True) -> Path:
        return self._sign("--detach-sign", src, dest, armor=armor)

    def _sign(self, command: str, src: Path, dest: Path, *, armor: bool) -> Path:
        """Sign `src` into `dest` (replaced) with this key and DIGEST; `command` is gpg's mode."""
        if dest.exists():
            dest.unlink()
        args: list[Arg] = [
            "--local-user",
            self.fingerprint,
            "--digest-algo",
            DIGEST,
            "--output",
            dest,
            command,
        ]
        if armor:
            args.insert(0, "--armor")
        _gpg(self.home, *args, src)
        return dest

    def rpm_macros(self) -> list[str]:
        """The rpmsign --define arguments that point rpm's gpg at this key, non-interactively."""
        return [
            # Debian's rpm defaults %__gpg to /usr/bin/gpg2, which Debian's gnupg does not ship.
            "--define",
            f"__gpg {require('gpg')}",
            "--define",
            f"_gpg_path {self.home}",
            "--define",
            f"_gpg_name {self.fingerprint}",
            "--define",
            "_gpg_digest_algo sha256",
            "--define",
            "_gpg_sign_cmd_extra_args --batch --no-tty --pinentry-mode error",
        ]

    def sign_rpms(self, rpms: Sequence[Path]) -> None:
        """Sign (or re-sign, replacing another key's signature) each RPM in place."""
        if not rpms:
            return
        run(
            ["rpmsign", *self.rpm_macros(), "--addsign", *rpms],
            capture=True,
            env={"GNUPGHOME": os.fspath(self.home)},
        )


def _import_key_file(home: Path, config: KeyConfig) -> None:
    assert config.key_file is not None
    try:
        _gpg(home, "--import", config.key_file)
    except CommandFailed as exc:
        raise ConfigurationError(
            f"{ENV_KEY_FILE}={config.key_file}: gpg cannot import it",
            hint="the file must be an armored private key (gpg --armor --export-secret-keys KEYID)",
        ) from exc


def _import_from_user_keyring(home: Path, config: KeyConfig) -> None:
    assert config.key_id is not None
    user_home = Path(os.environ.get("GNUPGHOME") or Path.home() / ".gnupg")
    if not _secret_keys(user_home, config.key_id):
        raise ConfigurationError(
            f"{ENV_KEY_ID}={config.key_id}: no secret key with that id in {user_home}",
            hint=f"gpg --list-secret-keys in that keyring, or set {ENV_KEY_FILE} instead",
        )
    try:
        # Exporting needs the passphrase (gpg-agent re-protects the exported key with it).
        armored = _gpg_with_passphrase(
            user_home, config.passphrase, "--armor", "--export-secret-keys", config.key_id
        )
    except CommandFailed:
        # `from None`: the failed command's captured output is not worth the risk of echoing key
        # material into a log.
        raise ConfigurationError(
            f"{ENV_KEY_ID}={config.key_id}: gpg cannot export the secret key from {user_home}",
            hint=f"set {ENV_PASSPHRASE} if the key has a passphrase",
        ) from None
    _gpg(home, "--import", input=armored)


def _preset_passphrase(home: Path, key: SecretKey, passphrase: str) -> None:
    libexec = run(["gpgconf", "--list-dirs", "libexecdir"], capture=True).stdout.strip()
    preset = require(
        "gpg-preset-passphrase",
        directory=Path(libexec),
        needed_for="a passphrase-protected key needs it",
    )
    run(
        ["gpg-connect-agent", "--homedir", home, "/bye"],
        capture=True,
        env={"GNUPGHOME": os.fspath(home)},
    )
    for grip in key.keygrips:
        run(
            [preset, "--preset", grip],
            input=passphrase,
            capture=True,
            env={"GNUPGHOME": os.fspath(home)},
        )


def _load(home: Path, config: KeyConfig) -> SecretKey:
    if config.key_text is not None:
        try:
            _gpg(home, "--import", input=config.key_text)
        except CommandFailed as exc:
            raise ConfigurationError(
                f"{ENV_KEY}: gpg cannot import it",
                hint="it must hold an armored private key (gpg --armor --export-secret-keys)",
            ) from exc
    elif config.key_file is not None:
        _import_key_file(home, config)
    elif config.key_id is not None:
        _import_from_user_keyring(home, config)
    else:
        log.warning("no signing key configured: signing with a throwaway key (tests only)")
        key_file, _ = generate_throwaway_key(home / "throwaway.asc")
        _gpg(home, "--import", key_file)
        key_file.unlink()

    keys = _secret_keys(home, config.key_id) if config.key_id else _secret_keys(home)
    where = config.describe()
    if not keys:
        raise ConfigurationError(
            f"{where}: no secret key found"
            + (f" matching {config.key_id}" if config.key_id else ""),
            hint="export the private key, not only the public one (gpg --export-secret-keys)",
        )
    if len(keys) > 1:
        raise ConfigurationError(
            f"{where}: {len(keys)} secret keys match; the repository is signed by exactly one",
            hint=f"set {ENV_KEY_ID} to the fingerprint of the one to use",
        )
    key = keys[0]
    if not key.can_sign:
        raise ConfigurationError(
            f"{where}: key {key.fingerprint} cannot sign (expired, revoked, or no signing subkey)",
            hint="gpg --quick-set-expire or a key with a signing capability",
        )
    if config.passphrase:
        _preset_passphrase(home, key, config.passphrase)
    # Prove the key signs now, so that a wrong passphrase is one clear error before any work.
    probe = home / "probe"
    probe.write_text("probe\n", encoding="ascii")
    try:
        _gpg(
            home,
            "--local-user",
            key.fingerprint,
            "--output",
            home / "probe.sig",
            "--detach-sign",
            probe,
        )
    except CommandFailed as exc:
        raise ConfigurationError(
            f"{where}: gpg cannot sign with key {key.fingerprint}",
            hint=f"check {ENV_PASSPHRASE} (a protected key needs it) and the key's expiry",
        ) from exc
    return key


@contextmanager
def signer(config: KeyConfig) -> Iterator[Signer]:
    """Yield a Signer whose temporary GNUPGHOME holds only the signing key; removed on exit."""
    home = _new_home("qss-sign-")
    try:
        key = _load(home, config)
        log.info("signing with %s (%s, %s)", key.fingerprint, key.uid, config.describe())
        yield Signer(home=home, key=key, source=config.describe())
    finally:
        _remove_home(home)
