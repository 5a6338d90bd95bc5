"""Errors users see: one line, a kind, a hint, and the exit code CONTRACT.md assigns.

Every failure that reaches the CLI is an `ImgbuildError`; anything else is a bug and is
reported as such (with a traceback only under --debug).
"""

from __future__ import annotations

from dataclasses import dataclass

OK = 0
BAD_INPUT = 1
USAGE = 2
NOT_FOUND = 3
CONFLICT = 4
UNAVAILABLE = 5
INTEGRITY = 6


@dataclass
class ImgbuildError(Exception):
    message: str
    hint: str = ""
    kind: str = "error"
    exit_code: int = BAD_INPUT

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict:
        return {"error": {"kind": self.kind, "message": self.message, "hint": self.hint}}


def _kind(kind: str, code: int):
    """Make a subclass that fixes `kind` and `exit_code` (so raise sites stay one line)."""

    def init(self, message: str, hint: str = "") -> None:
        ImgbuildError.__init__(self, message, hint, kind, code)

    return init


class BadInput(ImgbuildError):
    __init__ = _kind("bad_input", BAD_INPUT)


class UsageError(ImgbuildError):
    __init__ = _kind("usage", USAGE)


class NotFound(ImgbuildError):
    __init__ = _kind("not_found", NOT_FOUND)


class Conflict(ImgbuildError):
    __init__ = _kind("conflict", CONFLICT)


class Unavailable(ImgbuildError):
    __init__ = _kind("unavailable", UNAVAILABLE)


class IntegrityError(ImgbuildError):
    __init__ = _kind("integrity", INTEGRITY)
