"""The one error hierarchy of zarrsample."""

from __future__ import annotations

__all__ = ["ParameterTypeError", "ZarrsampleError"]


class ZarrsampleError(ValueError):
    """A value given to zarrsample breaks a documented rule.

    Subclasses ``ValueError`` so that ``except ValueError`` keeps working;
    the message names the parameter, the rule and the value received.
    """


class ParameterTypeError(TypeError, ValueError):
    """A parameter of the zarrdataset-compatible surface has a wrong type.

    A ``TypeError`` (zarrsample's rule for wrong types) that is also a
    ``ValueError``, which zarrdataset raises for the same inputs (a string
    ``patch_size``), so code written for either catches it.
    """
