"""Fast tests of the Podman backend's logic: its command line, the image preparation and its
cache keys, the skip of a target whose image cannot be had, pruning and the teardown check.

No podman runs here: `FakePodman` answers from a table and records every call. What only a
registry exercises (a real pull, the preparation's package installs in Fedora's and EL's own
images) is listed in README's "Registry targets".
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from fakes import FakeBackend, RecordingContainer
from qss_toolkit.errors import CommandFailed
from qss_toolkit.locks import exclusive
from qss_toolkit.smoke import runner
from qss_toolkit.smoke.engines import podman
from qss_toolkit.smoke.engines.base import ContainerError, inner_command
from qss_toolkit.smoke.engines.nspawn import NspawnBackend
from qss_toolkit.smoke.rootfs import RootfsCache, cache_key
from qss_toolkit.smoke.scenarios.registry import ScenarioContext, ScenarioFailed, select_scenarios
from qss_toolkit.smoke.targets import IMAGE_TARGETS, TARGETS, ImageRoot, Target

FEDORA = IMAGE_TARGETS["fedora-45"]
ROCKY = IMAGE_TARGETS["rocky-9"]
D12 = TARGETS["debian-12"]


class FakePodman(podman.Podman):
    """A Podman whose calls are recorded; `answers` maps a call's first words to (exit, out)."""

    def __init__(self, state: Path, answers: Mapping[str, tuple[int, str]] | None = None) -> None:
        super().__init__(state)
        self.answers = dict(answers or {})
        self.calls: list[str] = []
        self.inits: list[str] = []  # the calls that start a container's init (niceness 0)

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        input: str | None = None,
        init: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        line = " ".join(args)
        self.calls.append(line)
        if init:
            self.inits.append(line)
        code, out = next(
            (answer for prefix, answer in self.answers.items() if line.startswith(prefix)), (0, "")
        )
        if check and code != 0:
            raise AssertionError(f"unexpected failure of {line}")
        return subprocess.CompletedProcess(list(args), code, out, "Error: " + out if code else "")


def test_every_piece_of_podmans_state_is_under_ours(tmp_path: Path) -> None:
    engine = podman.Podman(tmp_path / "podman")
    argv = engine.argv("ps")
    assert argv[-1] == "ps"
    assert f"--root={tmp_path}/podman/storage" in argv
    assert f"--network-config-dir={tmp_path}/podman/networks" in argv  # not /etc/containers
    assert f"--volumepath={tmp_path}/podman/volumes" in argv
    # Its run state, libpod's temporary files and runc's state: one /run directory of its own.
    assert f"--runroot={engine.runroot}" in argv
    assert f"--tmpdir={engine.runroot}/libpod" in argv
    assert f"--runtime-flag=root={engine.runroot}/runc" in argv
    assert any(a.startswith("--runtime=") and a.endswith("/runc") for a in argv)  # not crun
    assert engine.runroot.parent == Path("/run")
    assert podman.Podman(tmp_path / "other").runroot != engine.runroot


def test_capabilities_are_nspawns_and_sys_resource_only_where_the_host_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapBnd:\t000001fffeffffff\n")  # bit 24 (SYS_RESOURCE) clear
    assert not podman.host_has_capability(podman.CAP_SYS_RESOURCE, status)
    assert podman.host_has_capability(21, status)  # SYS_ADMIN
    status.write_text("CapBnd:\t000001ffffffffff\n")
    assert podman.host_has_capability(podman.CAP_SYS_RESOURCE, status)
    monkeypatch.setattr(podman, "host_has_capability", lambda bit: False)
    caps = podman.capabilities()
    assert "--cap-add=SYS_ADMIN" in caps and "--cap-add=NET_ADMIN" in caps
    assert "--cap-add=SYS_RESOURCE" not in caps
    monkeypatch.setattr(podman, "host_has_capability", lambda bit: True)
    assert "--cap-add=SYS_RESOURCE" in podman.capabilities()


def test_the_preparation_uses_the_images_own_package_manager() -> None:
    fedora = podman.preparation_script(FEDORA)
    lines = fedora.splitlines()
    assert lines[0] == "set -eu"
    assert lines[1].startswith("dnf -y --setopt=install_weak_deps=False install ")
    for package in ("systemd", "NetworkManager", "networkd-dispatcher", "python3-aiosmtpd"):
        assert f" {package}" in lines[1]
    assert lines[-1] == FEDORA.family.manager.clear_caches()
    assert "qss-host-provides" not in fedora  # the distribution's own rpm, python3, systemd
    rocky = podman.preparation_script(ROCKY).splitlines()
    # EPEL first; aiosmtpd from dnf where a repository has it, else from PyPI.
    assert isinstance(ROCKY.root, ImageRoot)
    assert rocky[1:3] == list(ROCKY.root.setup)
    assert " python3-aiosmtpd" not in rocky[3]
    assert rocky[4].startswith("if dnf -q repoquery --available python3-aiosmtpd")
    assert "else dnf -y install python3-pip && python3 -m pip install" in rocky[4]


def test_a_prepared_images_tag_changes_with_what_makes_it() -> None:
    tag = podman.prepared_image(FEDORA)
    assert tag.startswith("localhost/qss-image:fedora-45-")
    assert podman.prepared_image(FEDORA) == tag
    root = FEDORA.root
    assert isinstance(root, ImageRoot)
    for changed in (
        replace(root, image="registry.fedoraproject.org/fedora:46"),
        replace(root, packages=(*root.packages, "strace")),
        replace(root, setup=("true",)),
    ):
        assert podman.prepared_image(replace(FEDORA, root=changed)) != tag
    # A Debian target's image is its root's cache key: one image per cached root.
    assert podman.root_image(D12) == f"localhost/qss-root:{cache_key(D12)}"


def test_an_image_that_cannot_be_pulled_skips_its_target_with_podmans_reason(
    tmp_path: Path,
) -> None:
    reason = "initializing source docker://registry.fedoraproject.org/fedora:45: no route"
    fake = FakePodman(tmp_path, {"image exists": (1, ""), "pull": (125, reason)})
    backend = podman.PodmanBackend(RootfsCache(tmp_path / "rootfs"), fake)
    said = backend.prepare(FEDORA)
    assert said == f"image registry.fedoraproject.org/fedora:45 not available: Error: {reason}"
    assert not [c for c in fake.calls if c.startswith(("run", "commit"))]


def test_a_pulled_image_is_prepared_committed_and_its_container_removed(tmp_path: Path) -> None:
    tag = podman.prepared_image(FEDORA)
    fake = FakePodman(tmp_path, {f"image exists {tag}": (1, "")})
    store = podman.ImageStore(fake, RootfsCache(tmp_path / "rootfs"))
    assert store.prepared(FEDORA) == tag
    run = next(c for c in fake.calls if c.startswith("run "))
    assert "--network=host" in run  # the mirrors, without a podman network (no iptables)
    assert "--ulimit=nofile=20000:20000 --ulimit=nproc=32768:32768" in run  # runc needs them
    assert run.endswith(podman.preparation_script(FEDORA))
    name = run.split("--name=")[1].split()[0]
    assert f"commit --quiet {name} {tag}" in fake.calls
    assert fake.calls[-1] == f"rm -f {name}"
    # The base image is already here: no pull. A prepared image already here: nothing at all.
    assert not [c for c in fake.calls if c.startswith("pull")]
    again = FakePodman(tmp_path)
    podman.ImageStore(again, RootfsCache(tmp_path / "rootfs")).prepared(FEDORA)
    assert again.calls == [f"image exists {tag}"]


def test_a_failed_preparation_still_removes_its_container(tmp_path: Path) -> None:
    tag = podman.prepared_image(FEDORA)
    fake = FakePodman(tmp_path, {f"image exists {tag}": (1, ""), "run ": (1, "No match")})
    with pytest.raises(AssertionError, match="unexpected failure of run"):
        podman.ImageStore(fake, RootfsCache(tmp_path / "rootfs")).prepared(FEDORA)
    assert fake.calls[-1].startswith("rm -f qss-prepare-")
    assert not [c for c in fake.calls if c.startswith("commit")]


def test_images_are_pruned_with_their_roots(tmp_path: Path) -> None:
    cache = RootfsCache(tmp_path / "rootfs")
    kept_key, gone_key = "bookworm-0123456789abcdef", "bullseye-fedcba9876543210"
    (cache.directory / kept_key).mkdir(parents=True)
    current = podman.prepared_image(FEDORA)
    listing = {
        f"images --format={{{{.Repository}}}}:{{{{.Tag}}}} {podman.ROOT_REPOSITORY}": (
            0,
            f"{podman.ROOT_REPOSITORY}:{kept_key}\n{podman.ROOT_REPOSITORY}:{gone_key}\n",
        ),
        f"images --format={{{{.Repository}}}}:{{{{.Tag}}}} {podman.PREPARED_REPOSITORY}": (
            0,
            f"{current}\n{podman.PREPARED_REPOSITORY}:fedora-43-0000000000000000\n",
        ),
    }
    fake = FakePodman(tmp_path, listing)
    removed = podman.ImageStore(fake, cache).prune([FEDORA, D12])
    assert removed == [
        f"{podman.ROOT_REPOSITORY}:{gone_key}",
        f"{podman.PREPARED_REPOSITORY}:fedora-43-0000000000000000",
    ]
    assert [c for c in fake.calls if c.startswith("rmi")] == [f"rmi {r}" for r in removed]


def test_prune_removes_containers_of_killed_runs_but_not_kept_or_live_ones(tmp_path: Path) -> None:
    ps = f"ps -a --filter=label={podman.LABEL} --format={{{{.Names}}}}"
    fake = FakePodman(tmp_path, {ps: (0, "qssd12-dead1\nqssd12-kept1\nqssd12-live1\n")})
    backend = podman.PodmanBackend(RootfsCache(tmp_path / "rootfs"), fake)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "qssd12-kept1.kept").write_text("kept\n")
    with exclusive(runs / "qssd12-live1.lock"):
        backend.prune([D12])
    removed = [c for c in fake.calls if c.startswith("rm ")]
    assert removed == ["rm --force --time=0 qssd12-dead1"]


def test_prune_deletes_runcs_records_of_containers_podman_no_longer_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePodman(tmp_path, {"ps -a --no-trunc": (0, "live1\nstopped-known\n")})
    backend = podman.PodmanBackend(RootfsCache(tmp_path / "rootfs"), fake)
    root = tmp_path / "runc"
    root.mkdir()
    monkeypatch.setattr(podman.Podman, "runroot", property(lambda self: tmp_path))
    monkeypatch.setattr(podman, "require", lambda name, **_: name)
    states = [
        {"id": "live1", "status": "running"},
        {"id": "stopped-known", "status": "stopped"},  # exited, not yet removed: podman's
        {"id": "gone1", "status": "stopped"},  # removed from podman, its record left
        {"id": "gone2", "status": "running"},  # not stopped: never touched
    ]
    ran: list[list[str]] = []

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps(states) if "list" in argv else "")

    monkeypatch.setattr(podman, "run", run)
    assert backend.forget_stale_runtime_states() == ["gone1"]
    assert ran[1:] == [["runc", f"--root={root}", "delete", "--force", "gone1"]]
    ran.clear()
    fake.answers["ps -a --no-trunc"] = (125, "database is locked")
    assert backend.forget_stale_runtime_states() == []  # podman's list unread: nothing deleted
    assert not any("delete" in argv for argv in ran)


def test_leftovers_name_what_a_teardown_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(podman, "podman_chains", lambda: ["INPUT_direct"])
    monkeypatch.setattr(podman, "netns_mounts", lambda: [])
    ps = f"ps -a --filter=label={podman.LABEL} --format={{{{.Names}}}}"
    fake = FakePodman(tmp_path, {ps: (0, "qssd12-aaaaa\n")})
    backend = podman.PodmanBackend(RootfsCache(tmp_path / "rootfs"), fake)
    left = podman.PodmanContainer(fake, "img", "qssd12-aaaaa", boot=True, network_veth=True)
    clean = podman.PodmanContainer(fake, "img", "qssd12-bbbbb", boot=True, network_veth=True)
    backend.containers += [left, clean]
    monkeypatch.setattr(podman, "host_links", lambda name: name == left.veth)
    assert backend.leftovers() == [
        "container qssd12-aaaaa was not removed",
        f"interface {left.veth} is left",
    ]
    monkeypatch.setattr(podman, "podman_chains", lambda: ["INPUT_direct", "NETAVARK_FORWARD"])
    monkeypatch.setattr(podman, "netns_mounts", lambda: ["/run/netns/netns-1234"])
    assert backend.leftovers()[2:] == [
        "network namespace /run/netns/netns-1234 is left",
        "iptables chain NETAVARK_FORWARD was made",
    ]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "qssd12-aaaaa.kept").write_text("kept\n")  # kept: not a leftover
    assert backend.leftovers()[:1] == ["network namespace /run/netns/netns-1234 is left"]
    state = tmp_path / "runc" / "c0ffee"  # runc's record of a removed container
    state.mkdir(parents=True)
    monkeypatch.setattr(clean, "runtime_state", lambda: state)
    assert backend.leftovers()[:1] == [f"runc state {state} is left"]


def test_a_veths_host_name_fits_ifnamsiz_and_is_podmans_own() -> None:
    names = {
        podman.PodmanContainer(podman.Podman(Path("/x")), "i", n, boot=True).veth
        for n in ("qssd12-00000", "qssd12-00001", "qssrod13-00000")
    }
    assert len(names) == 3
    assert all(len(n) <= 15 and n.startswith("vp-") for n in names)


def test_mounts_are_read_with_their_escapes_decoded(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text("proc /proc proc rw 0 0\nnsfs /run/netns/a\\040b nsfs rw 0 0\n")
    assert podman.mounts(table) == ["/proc", "/run/netns/a b"]


def test_nspawn_skips_registry_targets_and_boots_debian_roots(tmp_path: Path) -> None:
    backend = NspawnBackend(RootfsCache(tmp_path))
    assert backend.prepare(D12) is None
    said = backend.prepare(FEDORA)
    assert said is not None and "--backend podman" in said and "fedora:45" in said


def test_a_skipped_target_reports_each_scenario_as_skipped_with_the_reason(
    tmp_path: Path,
) -> None:
    backend = FakeBackend(RecordingContainer())
    backend.unavailable[FEDORA.name] = "image registry.fedoraproject.org/fedora:45 not available"
    scenarios = select_scenarios(["install-qmail", "purge", "sendmail-mta-alternative"])
    reported: list[runner.ScenarioResult] = []
    outcome = runner.run_target(
        FEDORA,
        scenarios,
        dist=tmp_path,
        previous=None,
        logs=tmp_path / "logs",
        backend=backend,
        report=reported.append,
    )
    assert backend.started == []  # nothing booted
    assert outcome.skipped == backend.unavailable[FEDORA.name]
    # purge is Debian's alone: not a skip on an RPM target, simply not one of its scenarios.
    assert [(r.scenario, r.status) for r in outcome.results] == [
        ("install-qmail", runner.Status.SKIP),
        ("sendmail-mta-alternative", runner.Status.SKIP),
    ]
    assert reported == outcome.results
    assert all(r.message == outcome.skipped for r in outcome.results)
    table = runner.render_table([outcome])
    assert "install-qmail             skip" in table
    assert "skipped" in runner.junit_xml([outcome])
    assert runner.failure_report([outcome]) == ""


def test_a_failed_preparation_is_an_error_of_each_scenario_not_a_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FakeBackend(RecordingContainer())

    def fails(target: Target) -> str | None:
        raise CommandFailed("exit 1: podman run ... dnf -y install msmtp")

    monkeypatch.setattr(backend, "prepare", fails)
    outcome = runner.run_target(
        ROCKY,
        select_scenarios(["install-qmail", "status"]),
        dist=tmp_path,
        previous=None,
        logs=tmp_path / "logs",
        backend=backend,
    )
    assert outcome.skipped is None and backend.started == []
    assert [r.status for r in outcome.results] == [runner.Status.ERROR, runner.Status.ERROR]
    assert outcome.results[0].message == (
        "preparing rocky-9 for fake: exit 1: podman run ... dnf -y install msmtp"
    )
    assert "ERROR rocky-9 / install-qmail" in runner.failure_report([outcome])


@pytest.mark.parametrize(
    ("require", "leftovers", "code"),
    [(False, [], 0), (True, [], 1), (False, ["container qssd12-x was not removed"], 1)],
)
def test_the_verdict_passes_skips_unless_required_and_fails_a_bad_teardown(
    require: bool, leftovers: Sequence[str], code: int
) -> None:
    skipped = runner.TargetRun(FEDORA, skipped="image X not available: no registry")
    ran = runner.TargetRun(D12)
    ran.results.append(runner.ScenarioResult(D12.name, "status", runner.Status.PASS, 1.0))
    text, got = runner.verdict([ran, skipped], leftovers, "podman", require)
    assert got == code
    assert "fedora-45: skipped: image X not available: no registry" in text
    assert ("--require-targets: 1 target(s) skipped" in text) == require
    assert ("teardown incomplete (podman)" in text) == bool(leftovers)


def test_a_scenario_that_needs_the_veth_says_so_on_a_container_without_one(
    tmp_path: Path,
) -> None:
    ctx = ScenarioContext(D12, RecordingContainer(), tmp_path)
    with pytest.raises(ScenarioFailed, match="the networkd scenario needs a booted container"):
        ctx.veth("the networkd scenario")
    veth = podman.PodmanContainer(podman.Podman(tmp_path), "i", "n", boot=True, network_veth=True)
    assert ScenarioContext(D12, veth, tmp_path).veth("x") is veth
    assert veth.in_network(["ip", "link"]) == ["nsenter", "--target=0", "--net", "ip", "link"]


def test_every_target_has_a_family_manager_that_can_prepare_an_image() -> None:
    for target in TARGETS.values():
        manager = target.family.manager
        assert manager.system_install(["a b"]).endswith("'a b'")
        assert "'a b'" in manager.has_package("a b")


def test_the_backend_option_and_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QSS_BACKEND", raising=False)
    assert isinstance(runner.make_backend(None), NspawnBackend)
    assert isinstance(runner.make_backend("podman"), podman.PodmanBackend)
    monkeypatch.setenv("QSS_BACKEND", "podman")
    assert isinstance(runner.make_backend(None), podman.PodmanBackend)
    assert isinstance(runner.make_backend("nspawn"), NspawnBackend)  # the option wins
    args = runner.parse_args(["--backend", "podman", "--require-targets"])
    assert args.backend == "podman" and args.require_targets
    with pytest.raises(SystemExit):
        runner.parse_args(["--backend", "docker"])


def test_podman_boots_shared_with_systemd_and_a_veth_offline_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run line of each boot kind (what `start` asks podman for), recorded."""
    fake = FakePodman(tmp_path, {"inspect": (0, "4242 /libpod_parent/libpod-x /merged c0ffee")})
    ran: list[list[str]] = []
    monkeypatch.setattr(podman, "run", lambda argv, **kw: ran.append(list(map(str, argv))))
    monkeypatch.setattr(podman, "wait_until_settled", lambda c, started: "running")
    shared = podman.PodmanContainer(fake, "img", "qssd12-a", boot=True, network_veth=True)
    shared.start()
    line = next(c for c in fake.calls if c.startswith("run "))
    assert "--systemd=always" in line and "--network=none" in line
    assert "--ulimit=nofile=20000:20000" in line and "--ulimit=nproc=32768:32768" in line
    assert "--cgroupns" not in line and "/sys/fs/cgroup" not in line
    assert line.endswith("img /sbin/init")
    assert fake.inits == [line]  # the container's init at niceness 0, as a machine's
    assert ran == [["ip", "link", "add", shared.veth, "type", "veth", "peer", "name", "host0",
                    "netns", "4242"]]  # fmt: skip
    assert shared.init_pid == 4242 and shared.merged == "/merged"
    fake.calls.clear()
    ran.clear()
    offline = podman.PodmanContainer(fake, "img", "qssd12-b", boot=False)
    offline.start()
    line = next(c for c in fake.calls if c.startswith("run "))
    assert "--systemd=false" in line and line.endswith("img sleep infinity")
    assert ran == []  # no veth: the root of an image build has no network of its own


def test_a_podman_reboot_is_systemctl_reboot_then_podman_start_and_a_new_veth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePodman(
        tmp_path,
        {
            "inspect --format={{.State.Pid}}": (0, "4242 /libpod_parent/libpod-x /merged c0ffee"),
            "inspect --format={{.State.Status}}": (0, "exited\n"),
            "wait": (0, "129\n"),
        },
    )
    ran: list[list[str]] = []
    inside: list[str] = []
    monkeypatch.setattr(podman, "run", lambda argv, **kw: ran.append(list(map(str, argv))))
    monkeypatch.setattr(podman, "wait_until_settled", lambda c, started: "running")
    monkeypatch.setattr(podman, "wait_link_gone", lambda name: True)
    monkeypatch.setattr(podman, "require", lambda name, **_: f"/usr/bin/{name}")
    container = podman.PodmanContainer(fake, "img", "qssd12-a", boot=True, network_veth=True)
    container.start()
    assert container.id == "c0ffee"
    # runc's record of the exited container, which podman 4.3's clean-up leaves behind.
    state = tmp_path / "runc" / "c0ffee"
    state.mkdir(parents=True)
    monkeypatch.setattr(container, "runtime_state", lambda: state)

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        inside.append(" ".join(cmd))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(container, "run", run)
    # 4 s counted by the first boot (before the reboot; its cgroup is gone after it), 1 s since.
    counted = iter([4.0, None, 1.0])
    monkeypatch.setattr(podman, "cpu_seconds", lambda cgroups: next(counted))
    fake.calls.clear()
    ran.clear()
    container.reboot()
    assert inside == ["systemctl reboot"]
    assert [c.split()[0] for c in fake.calls] == ["wait", "inspect", "start", "inspect"]
    assert fake.calls[2] == "start qssd12-a" and fake.inits[-1] == "start qssd12-a"
    add = ["ip", "link", "add", container.veth, "type", "veth", "peer", "name", "host0"]
    assert ran == [
        ["/usr/bin/runc", f"--root={state.parent}", "delete", "--force", "c0ffee"],
        [*add, "netns", "4242"],  # the pair went with the old network namespace
    ]
    assert container.cpu_seconds() == 5.0


def test_a_podman_container_that_does_not_stop_is_not_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePodman(tmp_path, {"inspect": (0, "running\n"), "wait": (125, "timed out")})
    container = podman.PodmanContainer(fake, "img", "qssd12-a", boot=True)
    monkeypatch.setattr(
        container, "run", lambda cmd, **kw: subprocess.CompletedProcess([], 1, "", "no bus")
    )
    with pytest.raises(
        ContainerError, match=r"not stopped after systemctl reboot \(exit 1: no bus"
    ):
        container.reboot()
    assert not any(c.startswith("start") for c in fake.calls)
    offline = podman.PodmanContainer(fake, "img", "qssd12-b", boot=False)
    with pytest.raises(ContainerError, match="systemd is not running in this root"):
        offline.reboot()


def test_a_command_with_input_gets_it_drained_first_and_without_none_attached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """podman exec --interactive loses the output of a command that exits with its input
    unread (issue 21: sendmail without qmail said ''): only a command given input has stdin
    attached, and the container's shell reads all of it before the command starts."""
    monkeypatch.setattr(podman, "require", lambda name, **_: f"/usr/bin/{name}")
    container = podman.PodmanContainer(podman.Podman(tmp_path), "img", "qssd12-a", boot=True)
    inner = inner_command(["/usr/sbin/sendmail", "-t"], None)
    plain = container.exec_argv(["/usr/sbin/sendmail", "-t"], None, with_input=False)
    assert "--interactive" not in plain and plain[-len(inner) - 2 :] == ["exec", "qssd12-a", *inner]
    fed = container.exec_argv(["/usr/sbin/sendmail", "-t"], None, with_input=True)
    drain = ["/bin/sh", "-c", podman.DRAIN_STDIN, "qss-input"]
    assert fed[-len(inner) - 7 :] == ["exec", "--interactive", "qssd12-a", *drain, *inner]


@pytest.mark.parametrize("text", ["To: root\n\nfrom cron\n\n\n", "", "no newline", "$x `y` %s\\n"])
def test_the_drain_reads_the_input_to_its_end_and_keeps_the_commands_exit_and_bytes(
    tmp_path: Path, text: str
) -> None:
    given = tmp_path / "input"
    given.write_text(text)
    # A command that reads nothing and fails: the input is read to its end all the same (the
    # offset of the file it came from), and the exit status is the command's.
    with given.open("rb") as stdin:
        ignored = subprocess.run(
            ["sh", "-c", podman.DRAIN_STDIN, "qss-input", "sh", "-c", "echo said >&2; exit 75"],
            stdin=stdin, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert os.lseek(stdin.fileno(), 0, os.SEEK_CUR) == len(text.encode())
    assert (ignored.returncode, ignored.stderr) == (75, "said\n")
    # A command that reads it gets every byte, on a pipe as before.
    probe = 'test -p /dev/stdin || echo "not a pipe" >&2; cat'
    copied = subprocess.run(
        ["sh", "-c", podman.DRAIN_STDIN, "qss-input", "sh", "-c", probe],
        input=text, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (copied.returncode, copied.stdout, copied.stderr) == (0, text, "")
