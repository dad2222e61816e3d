"""The RPM preset policy, proved on the RPM target: what enables qmail-send.service on a first
install, and what an administrator does to keep it off.

systemd reads every *.preset of /etc/systemd/system-preset, /run/systemd/system-preset and
/usr/lib/systemd/system-preset sorted by file name across the three directories; a file in /etc
replaces one of the same name further down; the first line that matches a unit decides
(systemd.preset(5)). Fedora ships its policy as 90-default.preset (the services it enables) and
99-default-disable.preset (`disable *`). Our 95-qmail-send-systemd.preset sorts before the
latter: the deliberate difference from Fedora that the README states (a package that delivers
mail starts delivering). An administrator's preset wins when it sorts before ours (a name below
95-, as systemd.preset(5)'s 00-... examples) or replaces ours (the same name in /etc).
"""

from __future__ import annotations

from qss_toolkit.families import Family
from qss_toolkit.smoke.scenarios.registry import MAIN, UNIT, WANTS_LINK, ScenarioContext, scenario

ETC = "/etc/systemd/system-preset"
VENDOR = "/usr/lib/systemd/system-preset"
# Fedora's own policy file, as fedora-release ships it.
DISTRIBUTION_DISABLE = f"{VENDOR}/99-default-disable.preset"
# (file, content): the administrator's ways to keep the service off on install.
OPT_OUTS = (
    (f"{ETC}/50-local.preset", f"disable {UNIT}\n"),
    (f"{ETC}/00-admin.preset", "disable *\n"),
    (f"{ETC}/95-qmail-send-systemd.preset", f"disable {UNIT}\n"),
)


def _first_install_with(ctx: ScenarioContext, files: dict[str, str]) -> tuple[str, str, str]:
    """Install the package on a clean root holding `files`; (is-enabled, is-active, output)."""
    ctx.reset()
    ctx.install_qmail()
    for path, text in files.items():
        ctx.run_expect([0], f"mkdir -p {path.rsplit('/', 1)[0]} && cat > {path}", input=text)
    try:
        result = ctx.install_packages([MAIN])
        return ctx.is_enabled(), ctx.is_active(), result.stdout + result.stderr
    finally:
        ctx.check_output(["rm", "-f", *files])


@scenario("rpm-preset-policy", families=(Family.RPM,))
def rpm_preset_policy(ctx: ScenarioContext) -> None:
    """A distribution's `disable *` does not keep the service off (our deliberate difference
    from Fedora); an administrator's preset that disables it does: not enabled, not started."""
    enabled, active, _ = _first_install_with(ctx, {DISTRIBUTION_DISABLE: "disable *\n"})
    ctx.expect(
        (enabled, active) == ("enabled", "active"),
        f"with Fedora's 99-default-disable.preset alone: {enabled}, {active}",
    )
    for path, text in OPT_OUTS:
        enabled, active, output = _first_install_with(
            ctx, {DISTRIBUTION_DISABLE: "disable *\n", path: text}
        )
        ctx.expect(
            (enabled, active) == ("disabled", "inactive"),
            f"with {path} ({text.strip()}): {enabled}, {active}\n{output}",
        )
        ctx.expect(ctx.run(["test", "-e", WANTS_LINK]).returncode != 0, f"{WANTS_LINK} exists")
        ctx.expect("not started" in output, f"the install did not say why:\n{output}")
    ctx.reset()
