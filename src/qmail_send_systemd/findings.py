"""`Finding`: one problem a check found, with the file it is about and the fix (verify's unit).

A leaf: verify and submission_config both report findings, and neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    severity: str
    path: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.severity}: {self.path}: {self.message} (fix: {self.fix})"
