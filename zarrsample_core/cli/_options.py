"""The command line's spelling: argument types, and the options that messages suggest."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from .._errors import Hint, spelled

__all__ = [
    "FLAGS", "MASK_FLAGS", "area", "for_cli", "int_at_least", "json_object", "micrometres", "non_negative",
    "png_path", "positive", "sizes",
]

#: How a parameter that a message suggests is given on the command line.
FLAGS: dict[str, str] = {
    "axes": "--axes {}", "data_group": "--data-group {}", "level": "--level {}",
    "spatial_axes": "--spatial-axes {}", "allow_incomplete_patches": "--allow-incomplete",
}
MASK_FLAGS = {**FLAGS, "axes": "--mask-axes {}"}


def for_cli(message: str, hints: tuple[Hint, ...], flags: dict[str, str] = FLAGS) -> str:
    """``message`` with each suggested ``parameter=value`` written as its option (``--axes CYX``)."""
    for parameter, value in hints:
        if parameter in flags:
            message = message.replace(spelled(parameter, value), flags[parameter].format(value))
    return message


def sizes(minimum: int) -> Any:
    """An argparse type: one int, or comma-separated ints (one per spatial axis), each >= ``minimum``."""

    def parse(text: str) -> int | tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an int or comma-separated ints (one per spatial axis), got {text!r}"
            ) from None
        if any(v < minimum for v in values):
            raise argparse.ArgumentTypeError(f"every value must be >= {minimum}, got {text!r}")
        return values[0] if len(values) == 1 else values

    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: one int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


positive, non_negative = int_at_least(1), int_at_least(0)


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"anon\": true}}', got {text!r}")
    return value


def png_path(text: str) -> str:
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"previews are PNG files: give a path ending in .png, got {text!r}")
    return text


def micrometres(text: str) -> float:
    value = area(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a number of micrometres per pixel > 0, got {text!r}")
    return value


def area(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


