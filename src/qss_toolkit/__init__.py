"""qss_toolkit: the build-side toolkit behind the nox sessions (build, lint, smoke, repo, bench)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DIST = PROJECT_ROOT / "dist"
