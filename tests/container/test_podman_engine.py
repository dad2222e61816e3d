"""The Podman backend against a real podman (root, podman and runc from Debian): a Debian 12
root imported from the root cache, booted with systemd as PID 1; and what its teardown leaves
on the host, which must be nothing (containers, veths, mounts, /run/netns, iptables chains)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qss_toolkit.families import Family
from qss_toolkit.run import run
from qss_toolkit.smoke.engines.base import BootKind, ContainerCommandFailed, VethContainer
from qss_toolkit.smoke.engines.podman import (
    PodmanBackend,
    PodmanContainer,
    mounts,
    netns_mounts,
    podman_chains,
    prepared_image,
)
from qss_toolkit.smoke.targets import TARGETS, ImageRoot, Target

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(
        shutil.which("podman") is None or shutil.which("runc") is None,
        reason="podman and runc are not installed (apt-get install podman runc)",
    ),
]

TARGET = TARGETS["debian-12"]


def test_boot_exec_copy_network_accounting_and_a_complete_teardown(tmp_path: Path) -> None:
    backend = PodmanBackend()
    chains, namespaces = podman_chains(), netns_mounts()
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "in.txt").write_text("from the host\n")
    with backend.start(BootKind.SHARED, TARGET) as started:
        container = started
        assert isinstance(container, PodmanContainer) and isinstance(container, VethContainer)
        state = container.run(["systemctl", "is-system-running"], check=False).stdout.strip()
        assert state in ("running", "degraded")
        assert container.run("readlink /proc/1/exe").stdout.strip().endswith("/systemd")
        assert container.run("echo $LANG:$QSS_X", env={"QSS_X": "y"}).stdout.strip() == "C.UTF-8:y"
        assert container.run("cat", input="through stdin\n").stdout == "through stdin\n"
        with pytest.raises(ContainerCommandFailed, match="exit 3: exit 3"):
            container.run("exit 3")
        # A directory's contents go into the destination, twice over (as nspawn's cp -T).
        container.copy_into(source, "/srv/test")
        container.copy_into(source, "/srv/test")
        listed = container.run("find /srv/test -printf '%p %u\\n' | sort").stdout.split("\n")
        assert listed[:3] == ["/srv/test root", "/srv/test/sub root", "/srv/test/sub/in.txt root"]
        # /run is the container's own tmpfs: podman cp sees it.
        container.run("mkdir -p /run/qss && echo back > /run/qss/out.txt")
        container.copy_out("/run/qss/out.txt", tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_text() == "back\n"
        assert "systemd-journald" in container.journal(None)
        before = container.cpu_seconds()
        assert before is not None, "no cgroup2 CPU accounting on this host"
        container.run("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
        after = container.cpu_seconds()
        assert after is not None and after > before
        # The veth pair: host0 inside, its peer on the host, nothing else in the namespace.
        links = container.run("ls /sys/class/net").stdout.split()
        assert sorted(links) == ["host0", "lo"]
        assert Path("/sys/class/net", container.host_veth()).exists()
        shown = run(container.in_network(["ip", "-o", "link", "show", "host0"]), capture=True)
        assert "host0@" in shown.stdout
        name, veth, merged = container.name, container.host_veth(), container.merged
        assert merged in mounts()
    assert name not in backend.podman.containers()
    assert not Path("/sys/class/net", veth).exists()
    assert merged not in mounts()
    assert backend.leftovers() == []
    assert netns_mounts() == namespaces and podman_chains() == chains


def test_a_reboot_keeps_the_root_boots_systemd_again_and_tears_down_as_before() -> None:
    backend = PodmanBackend()
    with backend.start(BootKind.SHARED, TARGET) as started:
        container = started
        assert isinstance(container, PodmanContainer)
        pid1_start = "systemctl show -P UserspaceTimestampMonotonic"  # when PID 1 started
        before = int(container.run(pid1_start).stdout)
        container.run("echo kept > /etc/qss-mark && echo gone > /run/qss-mark")
        first = container.init_pid
        container.reboot()
        assert container.init_pid != first
        assert int(container.run(pid1_start).stdout) > before
        state = container.run(["systemctl", "is-system-running"], check=False).stdout.strip()
        assert state in ("running", "degraded")
        assert container.run("cat /etc/qss-mark").stdout == "kept\n"
        assert container.run(["test", "-e", "/run/qss-mark"], check=False).returncode == 1
        assert sorted(container.run("ls /sys/class/net").stdout.split()) == ["host0", "lo"]
        assert Path("/sys/class/net", container.host_veth()).exists()
        # Unlike nspawn's, podman's boots share the host's boot ID and get a tmpfs journal
        # (--systemd=always): the journal of the boot before is gone (docs/testing.md).
        journal = container.run("findmnt -n -o FSTYPE /var/log/journal").stdout.strip()
        assert journal == "tmpfs"
        name, veth, merged = container.name, container.host_veth(), container.merged
    assert name not in backend.podman.containers()
    assert not Path("/sys/class/net", veth).exists()
    assert merged not in mounts()
    assert backend.leftovers() == []


def test_two_containers_do_not_share_state_and_offline_has_no_systemd() -> None:
    backend = PodmanBackend()
    with (
        backend.start(BootKind.SHARED, TARGET) as first,
        backend.start(BootKind.SHARED, TARGET) as second,
    ):
        first.run("touch /etc/only-in-first")
        assert second.run(["test", "-e", "/etc/only-in-first"], check=False).returncode == 1
        first.run("systemctl stop systemd-logind")
        assert second.run(["systemctl", "is-active", "systemd-logind"]).stdout.strip() == "active"
    with backend.start(BootKind.OFFLINE, TARGET) as root:
        state = root.run(["systemctl", "is-system-running"], check=False).stdout.strip()
        assert state == "offline"
        assert root.journal(None) == ""
    assert backend.leftovers() == []


def test_an_image_target_is_prepared_once_with_its_own_package_manager_then_booted() -> None:
    """The registry targets' path, with a local image as the "registry" one (no registry is
    reachable here): Debian 12's imported root, prepared by apt from Debian's archive (over the
    host's network, as a registry image's preparation is), committed, then booted."""
    backend = PodmanBackend()
    base = backend.store.debian(TARGET)
    target = Target(
        "image-debian-12",
        Family.DEB,
        ImageRoot(base, ("strace",), setup=("test ! -e /usr/bin/strace",)),
        systemd="252",
        python="3.11",
    )
    tag = prepared_image(target)
    backend.podman("rmi", tag, check=False)
    try:
        assert backend.prepare(target) is None
        assert backend.podman.image_exists(tag)
        with backend.start(BootKind.SHARED, target) as container:
            assert container.run(["strace", "-V"]).stdout.startswith("strace -- version")
            # The preparation emptied apt's caches before the commit.
            assert (
                container.run(
                    "ls /var/lib/apt/lists/ | grep -c _Packages", check=False
                ).stdout.strip()
                == "0"
            )
        assert backend.prepare(target) is None  # made once: the second time finds it
        assert backend.leftovers() == []
    finally:
        backend.podman("rmi", tag, check=False)
