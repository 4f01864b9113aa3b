"""The two ways an attribute formula fails: refused when saved (FormulaError) or no value at sign-in
(FormulaUnavailable). Re-exported by idp.attributes.formula, their public home."""

from __future__ import annotations


class FormulaError(ValueError):
    """A formula refused when saved: a syntax or type error at (line, column), both 1-based."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


class FormulaUnavailable(Exception):
    """A formula could not produce a value for this user (a field it reads is unset, or a run-time error)."""
