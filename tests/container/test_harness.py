"""The container harness itself, against a real booted root (root, mmdebstrap, systemd-nspawn)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from added_package import EXTRA, EXTRA_FILE, make_tree
from qss_toolkit.build import control, packages
from qss_toolkit.smoke.engines.base import ContainerCommandFailed
from qss_toolkit.smoke.engines.nspawn import booted, offline
from qss_toolkit.smoke.scenarios.registry import MAIN, ScenarioContext
from qss_toolkit.smoke.targets import TARGETS

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(os.geteuid() != 0, reason="boots systemd-nspawn containers: needs root"),
]

TARGET = TARGETS["debian-12"]


def test_boot_run_copy_journal_and_teardown(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("from the host\n")
    with booted(TARGET) as container:
        root = container.root
        assert container.run(["systemctl", "is-system-running"], check=False).stdout.strip() in (
            "running",
            "degraded",
        )
        assert container.run("readlink /proc/1/exe").stdout.strip().endswith("/systemd")
        env = container.run("echo $LANG:$QSS_X", env={"QSS_X": "y"}).stdout.strip()
        assert env == "C.UTF-8:y"
        with pytest.raises(ContainerCommandFailed, match="exit 3: exit 3"):
            container.run("exit 3")
        container.copy_into(source, "/srv/test/in.txt")
        assert container.run(["cat", "/srv/test/in.txt"]).stdout == "from the host\n"
        container.run("echo back > /srv/test/out.txt")
        container.copy_out("/srv/test/out.txt", tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_text() == "back\n"
        assert "systemd-journald" in container.journal(None)
        # The run's writable layer is a tmpfs (nothing of it is written back to disk).
        mounts = Path("/proc/self/mounts").read_text().split("\n")
        assert any(f" {root.parent} tmpfs " in line for line in mounts), mounts
        assert container.run("cat /srv/test/out.txt").stdout == "back\n"
        cgroups = list(container.cgroups)
        pid = container.process.pid if container.process else 0
    assert not root.exists(), "the run's copy of the root was not removed"
    assert not root.parent.exists(), "the run's directory (its tmpfs mount point) is left"
    assert not any(c.exists() for c in cgroups), "the container's cgroups were not removed"
    assert not Path(f"/proc/{pid}").exists(), "systemd-nspawn is still running"


def test_a_reboot_keeps_the_root_boots_systemd_again_and_tears_down_as_before() -> None:
    with booted(TARGET, network_veth=True) as container:
        boot_id = container.run("cat /proc/sys/kernel/random/boot_id").stdout
        container.run("echo kept > /etc/qss-mark && echo gone > /run/qss-mark")
        first = (container.init_pid, container.process.pid if container.process else 0)
        container.reboot()
        assert (container.init_pid, container.process.pid if container.process else 0) != first
        assert container.run("cat /proc/sys/kernel/random/boot_id").stdout != boot_id
        assert container.run(["systemctl", "is-system-running"], check=False).stdout.strip() in (
            "running",
            "degraded",
        )
        assert container.run("cat /etc/qss-mark").stdout == "kept\n"
        assert container.run(["test", "-e", "/run/qss-mark"], check=False).returncode == 1
        assert container.run("ls /sys/class/net").stdout.split() == ["host0", "lo"]
        assert Path("/sys/class/net", container.host_veth()).exists()
        # The root's persistent journal holds both boots, the first one's shutdown included.
        listed = container.run("journalctl --no-pager --list-boots").stdout.splitlines()
        boots = [line.split()[0] for line in listed if line.split()[0].lstrip("-").isdigit()]
        assert boots == ["-1", "0"], listed
        shutdown = container.run("journalctl --no-pager -b -1 -o cat").stdout
        assert "Reached target" in shutdown and "Reboot" in shutdown, shutdown[-2000:]
        cgroups, veth = list(container.cgroups), container.host_veth()
        root, pid = container.root, container.process.pid if container.process else 0
    assert not root.exists() and not any(c.exists() for c in cgroups)
    assert not Path(f"/proc/{pid}").exists(), "systemd-nspawn is still running"
    assert not Path("/sys/class/net", veth).exists()


def test_two_containers_do_not_share_state() -> None:
    with booted(TARGET) as first, booted(TARGET) as second:
        first.run("touch /etc/only-in-first")
        assert second.run(["test", "-e", "/etc/only-in-first"], check=False).returncode == 1
        first.run("systemctl stop systemd-logind")
        assert second.run(["systemctl", "is-active", "systemd-logind"]).stdout.strip() == "active"


def test_offline_root_has_no_running_systemd() -> None:
    with offline(TARGET) as root:
        state = root.run(["systemctl", "is-system-running"], check=False).stdout.strip()
        assert state == "offline"
        root.run("touch /etc/offline-mark")
        assert (root.root / "etc" / "offline-mark").exists()


def test_a_added_package_is_installed_and_reset_purges_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: adding a package is adding its YAML. The harness installs one it was never told
    about, and reset() leaves nothing of it (purged, not just removed)."""

    tree = make_tree(tmp_path / "tree")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(control.source_date_epoch()))
    dist = tmp_path / "dist"
    packages.build("nfpm", [TARGET.family], dist, root=tree)
    with booted(TARGET) as container:
        ctx = ScenarioContext(TARGET, container, dist, project=tree)
        ctx.install_packages([MAIN, EXTRA])
        assert ctx.installed(EXTRA)
        assert container.run(["test", "-f", EXTRA_FILE], check=False).returncode == 0
        ctx.reset()
        assert ctx.package_state(EXTRA) == "not-installed"
        assert ctx.package_state(MAIN) == "not-installed"
        assert container.run(["test", "-e", EXTRA_FILE], check=False).returncode == 1
