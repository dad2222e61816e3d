"""The README quick start's shell blocks, as the umask-077 scenario reads them."""

from __future__ import annotations

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.smoke.scenarios.conditions import EXAMPLES, quick_start_blocks

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_quick_start_block_is_read_unindented_and_in_order() -> None:
    blocks = quick_start_blocks(README)
    assert blocks[0].startswith("qmail-send-systemd setup --smarthost smtp.example.net ")
    assert not any("sudo" in b for b in blocks)  # as root, as printed: no sudo on a minimal system
    assert any("--tls starttls" in b and "--password-file" in b for b in blocks)
    assert blocks[-1].startswith("printf 'To: you@example.org")
    assert all(not line.startswith("   ") or line.startswith("    --") for b in blocks
               for line in b.splitlines())  # fmt: skip
    # Each example name the scenario answers for is still in the README.
    text = "\n".join(blocks)
    for example, _ in EXAMPLES:
        assert example in text


def test_only_the_quick_start_section_is_read() -> None:
    readme = (
        "# x\n\n## Laptop relay in five minutes\n\n1. a\n\n   ```sh\n   one\n   ```\n"
        "\n## Next\n\n```sh\nnot this\n```\n"
    )
    assert quick_start_blocks(readme) == ["one"]
