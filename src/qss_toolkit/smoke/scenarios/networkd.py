"""The networkd-dispatcher hook proved with the real daemons: systemd-networkd makes the veth
link routable, networkd-dispatcher runs our routable.d hook, and qmail-send gets its SIGALRM.

The shared boot has a network namespace of its own with a veth pair: host0 inside, its peer on
the host. host0 gets 192.0.2.2/24 from a .network file in /run (it sorts before systemd's
80-container-host0.network, which would ask for DHCP): networkd calls a link "routable" once it
has a carrier and an address of global scope, and a link-local one would only make it
"degraded". 192.0.2.0/24 is TEST-NET-1 (RFC 5737), routed nowhere; the host side keeps no
address, and DHCP, IPv6 link-local addressing and router solicitations are off, so no packet
leaves the pair and none reaches the host's networks.
"""

from __future__ import annotations

from qss_toolkit.smoke.scenarios.lifecycle import (
    TCPTO,
    _attempts,
    _queue_remote_messages,
    _running_with_qmail,
    _tcpto_stamp,
    _wait_for_alarm,
    _wait_for_tcpok,
)
from qss_toolkit.smoke.scenarios.registry import (
    MAIN,
    NETWORKD_PACKAGE,
    ScenarioContext,
    scenario,
)

NETWORK_FILE = "/run/systemd/network/10-qss-host0.network"
NETWORK = """[Match]
Name=host0

[Network]
Address=192.0.2.2/24
DHCP=no
LinkLocalAddressing=no
IPv6AcceptRA=no
"""
HOOK_LINE = '90-qmail-send: routable on interface \\"host0\\": flushing the qmail queue'
DISPATCHER_LOG = "journalctl -b -o cat -u networkd-dispatcher.service"


@scenario("networkd-hook")
def networkd_hook(ctx: ScenarioContext) -> None:
    """Real systemd-networkd makes host0 routable: networkd-dispatcher runs our hook, ALRM."""
    container = ctx.veth("the networkd scenario")
    _running_with_qmail(ctx)
    ctx.install_packages([MAIN, NETWORKD_PACKAGE])
    ctx.artifacts.append("/run/systemd/network")
    host_side = container.host_veth()
    # The roots have no iproute2: the host's `ip` runs in the container's network namespace.
    inside = container.in_network(["ip"])
    try:
        # No carrier until networkd-dispatcher listens: the routable event must come after.
        ctx.host.run(["ip", "link", "set", host_side, "down"])
        ctx.host.run([*inside, "address", "flush", "dev", "host0"])
        ctx.host.run([*inside, "link", "set", "host0", "down"])
        ctx.run_expect([0], f"mkdir -p /run/systemd/network && cat > {NETWORK_FILE}", input=NETWORK)
        ctx.check_output("systemctl start systemd-networkd.service")
        # Type=notify: started once its startup triggers (--run-startup-triggers) have run.
        ctx.check_output("systemctl start networkd-dispatcher.service")
        _queue_remote_messages(ctx, 1)  # deferred: an ALRM retries it at once
        alarms, tcpto = _attempts(ctx), _tcpto_stamp(ctx)
        ctx.expect(
            ctx.run(f"{DISPATCHER_LOG} | grep -q '90-qmail-send'").returncode != 0,
            "the hook flushed before host0 had a carrier (no-carrier is not routable)",
        )
        ctx.host.run(["ip", "link", "set", host_side, "up"])
        ctx.wait_for(
            "networkctl status host0 | grep -Eq 'State: routable'",
            timeout=30,
            message="networkd to call host0 routable",
        )
        _wait_for_alarm(ctx, alarms, "host0 became routable", timeout=30)
        # The hook's one line reaches the journal through networkd-dispatcher.service.
        ctx.wait_for(f'{DISPATCHER_LOG} | grep -q "{HOOK_LINE}"', message="the hook's log line")
        _wait_for_tcpok(
            ctx, tcpto, f"host0 became routable (the reload ran no qmail-tcpok: {TCPTO})"
        )
    finally:
        # The boot is shared: both daemons stop, host0 goes back to unconfigured.
        ctx.run(
            "systemctl stop networkd-dispatcher.service systemd-networkd.service"
            f" systemd-networkd.socket; rm -f {NETWORK_FILE}"
        )
        ctx.host.run([*inside, "address", "flush", "dev", "host0"], check=False)
        ctx.host.run([*inside, "link", "set", "host0", "down"], check=False)
