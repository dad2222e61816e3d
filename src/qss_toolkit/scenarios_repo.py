"""Smoke scenarios for issue 5: apt and dnf install and upgrade from our signed repositories over
HTTP on the container's loopback, and refuse tampered ones with their own errors.

The repositories are published on the host with `qss_toolkit.repo` (a throwaway key generated for
the run, as a real publisher's key would come from the environment), copied into the container
and served by `python3 -m http.server`. The client uses the generated `.sources` / `.repo` file
and public key exactly as README tells an administrator to. apt only reads our source
(`Dir::Etc::SourceList=/dev/null` hides the root's Debian mirror), so no scenario needs the
internet. Each tamper case's client error line is logged and written to
dist/repo-smoke/<target>/<case>.txt for the report.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import DIST, repo, signing
from qss_toolkit.scenarios import MAIN, ScenarioContext, ScenarioFailed, scenario

log = logging.getLogger("qss_toolkit")

WWW = "/srv/qss/www"
HTTP_UNIT = "qss-repo-http"
APT = "apt-get -q -o Dir::Etc::SourceList=/dev/null"
APT_ENV = "DEBIAN_FRONTEND=noninteractive"
DNF = f"dnf -y --disablerepo='*' --enablerepo={repo.NAME} --setopt=install_weak_deps=False"
ERRORS_DIR = DIST / "repo-smoke"
_PASSPHRASE = "throwaway smoke passphrase"  # noqa: S105 - the smoke run's own throwaway key

# What each client says when it refuses a tampered repository (alternatives cover the wording
# of apt 2.2 with gpgv, apt 3.0 with sqv, and dnf 4).
REFUSALS: dict[str, str] = {
    "apt-other-key": r"NO_PUBKEY|Missing key|is not signed|signatures couldn't be verified",
    "apt-modified-packages": r"Hash Sum mismatch|unexpected size|Hashes of expected file",
    "apt-modified-pool": r"Hash Sum mismatch|unexpected size|Hashes of expected file",
    "dnf-modified-repomd": r"GPG signature verification error|Bad GPG signature|BAD signature",
    "dnf-unsigned-rpm": r"is not signed",
    "dnf-other-key-rpm": r"Public key for .* is not installed|not correct for this package",
}


class _Keys:
    """Two throwaway keys per smoke run, generated once (targets run in parallel threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._files: dict[str, Path] = {}

    def files(self) -> dict[str, Path]:
        with self._lock:
            if not self._files:
                self._dir = tempfile.TemporaryDirectory(prefix="qss-smoke-keys-")
                d = Path(self._dir.name)
                self._files = {
                    "good": signing.generate_throwaway_key(
                        d / "good.asc", name="qss smoke repository key", passphrase=_PASSPHRASE
                    )[0],
                    "other": signing.generate_throwaway_key(
                        d / "other.asc", name="qss smoke some other key"
                    )[0],
                }
            return self._files


_KEYS = _Keys()


@contextlib.contextmanager
def _signer(which: str) -> Iterator[signing.Signer]:
    files = _KEYS.files()
    config = signing.KeyConfig(
        key_file=files[which], passphrase=_PASSPHRASE if which == "good" else None
    )
    with signing.signer(config) as key:
        yield key


@dataclass
class _Server:
    """`python3 -m http.server` on the container's loopback, on a port the kernel picked."""

    unit: str
    port: int

    def url(self, case: str) -> str:
        return f"http://127.0.0.1:{self.port}/{case}"


def _serve(ctx: ScenarioContext) -> _Server:
    # A unit name of its own per scenario: systemd 257 may keep a stopped transient unit
    # loaded for a moment, and a second systemd-run with the same name would fail.
    unit = f"{HTTP_UNIT}-{uuid.uuid4().hex[:8]}"
    log_file = f"/srv/qss/{unit}.log"
    ctx.check_output(f"rm -rf {WWW} && mkdir -p {WWW}")
    # Port 0: containers of parallel targets share the host's network namespace (no --private-
    # network), so a fixed port would collide; http.server prints the port it got.
    ctx.check_output(
        [
            "systemd-run",
            f"--unit={unit}",
            "--collect",
            f"--property=StandardOutput=file:{log_file}",
            "python3",
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            WWW,
        ]
    )
    ctx.wait_for(f"grep -q 'port [0-9]' {log_file}", message="http.server to listen")
    match = re.search(r"port (\d+)", ctx.check_output(["cat", log_file]))
    if match is None:
        raise ScenarioFailed(f"http.server printed no port in {log_file}")
    return _Server(unit, int(match.group(1)))


def _stop_serving(ctx: ScenarioContext, server: _Server) -> None:
    ctx.run(f"systemctl stop {server.unit}; rm -f /srv/qss/{server.unit}.log; true")


def _files(ctx: ScenarioContext, *, previous: bool = False) -> list[Path]:
    return sorted(ctx.packages(previous=previous).values())


def _publish(
    ctx: ScenarioContext, tree: Path, files: Sequence[Path], key: signing.Signer, base_url: str
) -> None:
    """Publish `files` into the host tree `tree` (kept versions and all), as `repo` does."""
    deb = ctx.target.family == "deb"
    repo.publish(
        repo.PublishOptions(dist=tree.parent, out=tree, base_url=base_url),
        key,
        debs=list(files) if deb else [],
        rpms=[] if deb else list(files),
    )


def _upload(ctx: ScenarioContext, tree: Path, case: str) -> None:
    """Put the host tree at WWW/<case> in the container, replacing what was there."""
    ctx.check_output(["rm", "-rf", f"{WWW}/{case}"])
    ctx.container.copy_into(tree, f"{WWW}/{case}")


def _record(ctx: ScenarioContext, case: str, output: str) -> str:
    """The client's error line for `case` (asserted against REFUSALS), logged and kept."""
    pattern = re.compile(REFUSALS[case])
    lines = [line.strip() for line in output.splitlines() if pattern.search(line)]
    if not lines:
        raise ScenarioFailed(
            f"{case}: the client refused, but not with /{REFUSALS[case]}/:\n{output[-3000:]}"
        )
    line = lines[0]
    log.info("%s: %s refused: %s", ctx.target.name, case, line)
    where = ERRORS_DIR / ctx.target.name
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{case}.txt").write_text(line + "\n", encoding="utf-8")
    return line


# -- apt ------------------------------------------------------------------------------------


def _apt_client(ctx: ScenarioContext, tree: Path) -> None:
    """A clean client with our key and our .sources file, as README says; no other lists."""
    ctx.check_output(
        # No cached index or .deb from an earlier scenario may stand in for what is served.
        f"rm -rf /var/lib/apt/lists/* /etc/apt/sources.list.d/{repo.SOURCES_FILE}"
        " /var/cache/apt/archives/*.deb"
        " && mkdir -p /etc/apt/keyrings /var/lib/apt/lists/partial"
    )
    ctx.container.copy_into(tree / repo.APT_KEYRING, repo.CLIENT_APT_KEYRING)
    ctx.container.copy_into(
        tree / repo.SOURCES_FILE, f"/etc/apt/sources.list.d/{repo.SOURCES_FILE}"
    )
    ctx.check_output(["chmod", "0644", repo.CLIENT_APT_KEYRING])


def _apt_forget(ctx: ScenarioContext) -> None:
    ctx.run(
        f"rm -f /etc/apt/sources.list.d/{repo.SOURCES_FILE} {repo.CLIENT_APT_KEYRING};"
        " rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb;"
        " mkdir -p /var/lib/apt/lists/partial"
    )


def _apt(ctx: ScenarioContext, args: str, *, check: bool = True) -> str:
    cmd = f"{APT_ENV} {APT} {args} 2>&1"
    if check:
        return ctx.check_output(cmd, timeout=300)
    result = ctx.run(cmd, timeout=300)
    if result.returncode == 0:
        raise ScenarioFailed(f"apt-get {args} succeeded, expected a refusal:\n{result.stdout}")
    return result.stdout


def _apt_update_clean(ctx: ScenarioContext) -> None:
    out = _apt(ctx, "update")
    bad = [line for line in out.splitlines() if line.startswith(("W:", "E:", "Err:"))]
    ctx.expect(not bad, "apt-get update warned about our repository:\n" + "\n".join(bad))


@contextlib.contextmanager
def _apt_session(ctx: ScenarioContext) -> Iterator[tuple[_Server, Path]]:
    """A served, clean client, and a host directory for the trees; cleaned up afterwards."""
    ctx.reset()
    server = _serve(ctx)
    try:
        with tempfile.TemporaryDirectory(prefix="qss-repo-smoke-") as tmp:
            yield server, Path(tmp)
    finally:
        _apt_forget(ctx)
        _stop_serving(ctx, server)


@scenario("repo-apt-install-upgrade", families=("deb",))
def repo_apt_install_upgrade(ctx: ScenarioContext) -> None:
    """apt installs from the signed repository, upgrades to a newer version published into it,
    and can still go back to the older one (kept in the repository)."""
    with _apt_session(ctx) as (server, tmp), _signer("good") as key:
        tree = tmp / "repo"
        _publish(ctx, tree, _files(ctx, previous=True), key, server.url("main"))
        _upload(ctx, tree, "main")
        _apt_client(ctx, tree)
        _apt_update_clean(ctx)
        _apt(ctx, f"install -y {MAIN}")
        old = ctx.version()
        _publish(ctx, tree, _files(ctx), key, server.url("main"))
        _upload(ctx, tree, "main")
        _apt_update_clean(ctx)
        _apt(ctx, f"install -y --only-upgrade {MAIN}")
        new = ctx.version()
        ctx.expect(new != old, f"apt did not upgrade {MAIN} from {old}")
        madison = ctx.check_output(f"apt-cache -o Dir::Etc::SourceList=/dev/null madison {MAIN}")
        ctx.expect(
            f" {old} " in madison, f"the older {old} is gone from the repository:\n{madison}"
        )
        _apt(ctx, f"install -y --allow-downgrades {MAIN}={old}")
        ctx.expect(ctx.version() == old, f"apt could not downgrade to {old}")


@scenario("repo-apt-refuse-other-key", families=("deb",))
def repo_apt_refuse_other_key(ctx: ScenarioContext) -> None:
    """apt refuses a repository signed by another key than the one Signed-By names."""
    with _apt_session(ctx) as (server, tmp), _signer("good") as good, _signer("other") as other:
        genuine = tmp / "genuine"
        _publish(ctx, genuine, _files(ctx), good, server.url("case"))
        forged = tmp / "forged"
        _publish(ctx, forged, _files(ctx), other, server.url("case"))
        _upload(ctx, forged, "case")
        _apt_client(ctx, genuine)  # the administrator's key and .sources
        out = _apt(ctx, "update", check=False)
        _record(ctx, "apt-other-key", out)
        _apt(ctx, f"install -y {MAIN}", check=False)
        ctx.expect(not ctx.installed(), f"{MAIN} was installed from a forged repository")


@scenario("repo-apt-refuse-modified-packages", families=("deb",))
def repo_apt_refuse_modified_packages(ctx: ScenarioContext) -> None:
    """apt refuses a Packages index changed after signing (recompressed, as an attacker would)."""
    with _apt_session(ctx) as (server, tmp), _signer("good") as key:
        tree = tmp / "repo"
        _publish(ctx, tree, _files(ctx), key, server.url("case"))
        binary = tree / "deb/dists" / repo.DEFAULT_SUITE / repo.COMPONENT / "binary-all"
        packages = binary / "Packages"
        text = packages.read_text(encoding="utf-8")
        tampered = re.sub(r"(?m)^Description: .*$", "Description: trojaned", text, count=1)
        ctx.expect(tampered != text, "no Description line to tamper with in Packages")
        packages.write_text(tampered, encoding="utf-8")
        for compressed in (binary / "Packages.gz", binary / "Packages.xz"):
            compressed.unlink()
        repo.compress_index(packages)
        _upload(ctx, tree, "case")
        _apt_client(ctx, tree)
        out = _apt(ctx, "update", check=False)
        _record(ctx, "apt-modified-packages", out)
        _apt(ctx, f"install -y {MAIN}", check=False)
        ctx.expect(not ctx.installed(), f"{MAIN} was installed from a tampered index")


@scenario("repo-apt-refuse-modified-pool", families=("deb",))
def repo_apt_refuse_modified_pool(ctx: ScenarioContext) -> None:
    """apt refuses a .deb in pool/ changed after publishing (same size: a hash sum mismatch)."""
    with _apt_session(ctx) as (server, tmp), _signer("good") as key:
        tree = tmp / "repo"
        _publish(ctx, tree, _files(ctx), key, server.url("case"))
        (deb,) = [p for p in (tree / "deb/pool").rglob(f"{MAIN}_*.deb")]
        data = bytearray(deb.read_bytes())
        data[len(data) // 2] ^= 0xFF
        deb.write_bytes(bytes(data))
        _upload(ctx, tree, "case")
        _apt_client(ctx, tree)
        _apt_update_clean(ctx)  # the signed indices are genuine
        out = _apt(ctx, f"install -y {MAIN}", check=False)
        _record(ctx, "apt-modified-pool", out)
        ctx.expect(not ctx.installed(), f"{MAIN} was installed from a modified .deb")


# -- dnf ------------------------------------------------------------------------------------


def _dnf_client(ctx: ScenarioContext, tree: Path) -> None:
    """Our key in /etc/pki/rpm-gpg and our .repo file; dnf's caches and our packages gone."""
    ctx.check_output(f"rm -f /etc/yum.repos.d/{repo.REPO_FILE}; dnf clean all >/dev/null; true")
    ctx.container.copy_into(tree / repo.RPM_KEY, repo.CLIENT_RPM_KEY)
    ctx.container.copy_into(tree / repo.REPO_FILE, f"/etc/yum.repos.d/{repo.REPO_FILE}")


def _dnf_forget(ctx: ScenarioContext) -> None:
    ctx.run(f"rm -f /etc/yum.repos.d/{repo.REPO_FILE} {repo.CLIENT_RPM_KEY}; dnf clean all; true")


def _dnf(ctx: ScenarioContext, args: str, *, check: bool = True) -> str:
    cmd = f"{DNF} {args} 2>&1"
    if check:
        return ctx.check_output(cmd, timeout=300)
    result = ctx.run(cmd, timeout=300)
    if result.returncode == 0:
        raise ScenarioFailed(f"dnf {args} succeeded, expected a refusal:\n{result.stdout}")
    return result.stdout


@contextlib.contextmanager
def _dnf_session(ctx: ScenarioContext) -> Iterator[tuple[_Server, Path]]:
    ctx.reset()
    server = _serve(ctx)
    try:
        with tempfile.TemporaryDirectory(prefix="qss-repo-smoke-") as tmp:
            yield server, Path(tmp)
    finally:
        _dnf_forget(ctx)
        _stop_serving(ctx, server)


@scenario("repo-dnf-install-upgrade", families=("rpm",))
def repo_dnf_install_upgrade(ctx: ScenarioContext) -> None:
    """dnf installs from the signed repository (gpgcheck and repo_gpgcheck on), upgrades to a
    newer version published into it, and can downgrade to the kept older one."""
    with _dnf_session(ctx) as (server, tmp), _signer("good") as key:
        tree = tmp / "repo"
        _publish(ctx, tree, _files(ctx, previous=True), key, server.url("main"))
        _upload(ctx, tree, "main")
        _dnf_client(ctx, tree)
        _dnf(ctx, f"install {MAIN}")
        old = ctx.version()
        _publish(ctx, tree, _files(ctx), key, server.url("main"))
        _upload(ctx, tree, "main")
        _dnf(ctx, f"--refresh upgrade {MAIN}")
        new = ctx.version()
        ctx.expect(new != old, f"dnf did not upgrade {MAIN} from {old}")
        listed = _dnf(ctx, f"--showduplicates list available {MAIN}")
        ctx.expect(old in listed, f"the older {old} is gone from the repository:\n{listed}")
        _dnf(ctx, f"downgrade {MAIN}")
        ctx.expect(ctx.version() == old, f"dnf could not downgrade to {old}")


@scenario("repo-dnf-refuse-modified-repomd", families=("rpm",))
def repo_dnf_refuse_modified_repomd(ctx: ScenarioContext) -> None:
    """dnf (repo_gpgcheck=1) refuses repodata/repomd.xml changed after signing."""
    with _dnf_session(ctx) as (server, tmp), _signer("good") as key:
        tree = tmp / "repo"
        _publish(ctx, tree, _files(ctx), key, server.url("case"))
        repomd = tree / "rpm/repodata/repomd.xml"
        text = repomd.read_text(encoding="utf-8")
        tampered = re.sub(r"<revision>(\d+)</revision>", r"<revision>1\1</revision>", text)
        ctx.expect(tampered != text, "no <revision> in repomd.xml to tamper with")
        repomd.write_text(tampered, encoding="utf-8")
        _upload(ctx, tree, "case")
        _dnf_client(ctx, tree)
        out = _dnf(ctx, f"install {MAIN}", check=False)
        _record(ctx, "dnf-modified-repomd", out)
        ctx.expect(not ctx.installed(), f"{MAIN} was installed from tampered metadata")


def _rpm_case(ctx: ScenarioContext, case: str, signer_name: str | None) -> None:
    """Metadata genuinely signed, but the RPMs unsigned (None) or signed by `signer_name`."""
    with _dnf_session(ctx) as (server, tmp), _signer("good") as key:
        tree = tmp / "repo"
        _publish(ctx, tree, _files(ctx), key, server.url("case"))
        root = tree / "rpm"
        shutil.rmtree(root / "Packages")
        staged = repo.stage_rpms(root, _files(ctx))
        if signer_name is not None:
            with _signer(signer_name) as other:
                other.sign_rpms(staged)
        shutil.rmtree(root / "repodata")
        repo.write_dnf_metadata(root, key)
        _upload(ctx, tree, "case")
        _dnf_client(ctx, tree)
        out = _dnf(ctx, f"install {MAIN}", check=False)
        _record(ctx, case, out)
        ctx.expect(not ctx.installed(), f"{MAIN} was installed ({case})")


@scenario("repo-dnf-refuse-unsigned-rpm", families=("rpm",))
def repo_dnf_refuse_unsigned_rpm(ctx: ScenarioContext) -> None:
    """dnf (gpgcheck=1) refuses an unsigned RPM listed by genuinely signed metadata."""
    _rpm_case(ctx, "dnf-unsigned-rpm", None)


@scenario("repo-dnf-refuse-other-key-rpm", families=("rpm",))
def repo_dnf_refuse_other_key_rpm(ctx: ScenarioContext) -> None:
    """dnf (gpgcheck=1) refuses an RPM signed by another key than the repository's."""
    _rpm_case(ctx, "dnf-other-key-rpm", "other")
