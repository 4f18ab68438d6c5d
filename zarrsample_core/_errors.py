"""The one error hierarchy of zarrsample."""

from __future__ import annotations

__all__ = ["ZarrsampleError"]


class ZarrsampleError(ValueError):
    """A value given to zarrsample breaks a documented rule.

    Subclasses ``ValueError`` so that ``except ValueError`` keeps working;
    the message names the parameter, the rule and the value received.
    """
