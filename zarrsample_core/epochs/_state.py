"""Resumable iterator state: a configuration fingerprint and a small versioned dict of ints.

:func:`make_state` / :func:`check_state` save and restore a position in an
epoch's order (Grain style); :func:`config_fingerprint` tells configurations
apart, the same on every machine.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np

from .._checks import check_int
from .._errors import ZarrsampleError
from ._order import shard_length

__all__ = ["STATE_VERSION", "check_state", "config_fingerprint", "make_state", "resume_point"]

#: Version of the dict written by :func:`make_state`.
STATE_VERSION = 1
#: Keys every saved state holds.
_REQUIRED_KEYS = ("version", "epoch", "position", "fingerprint")


def _encode(name: str, value: object) -> bytes:
    """Canonical, type-tagged, length-prefixed bytes of one configuration value."""
    if value is None:
        tag, payload = b"N", b""
    elif isinstance(value, (bool, np.bool_)):
        tag, payload = b"B", b"1" if value else b"0"
    elif isinstance(value, Integral):
        tag, payload = b"I", str(int(value)).encode()
    elif isinstance(value, Real):
        tag, payload = b"F", repr(float(value)).encode()
    elif isinstance(value, str):
        tag, payload = b"S", value.encode("utf-8")
    elif isinstance(value, (tuple, list)):
        tag, payload = b"L", b"".join(_encode(f"{name}[{i}]", item) for i, item in enumerate(value))
    elif isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"{name} must have str keys, got {list(value)!r}")
        tag, payload = b"D", b"".join(_encode(name, key) + _encode(f"{name}[{key!r}]", value[key])
                                      for key in sorted(value))
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"{name} must not be an object array, got dtype {value.dtype}")
        array = np.ascontiguousarray(value.astype(value.dtype.newbyteorder("<"), copy=False))
        header = repr((np.lib.format.dtype_to_descr(array.dtype), array.shape)).encode()
        tag, payload = b"A", struct.pack("<Q", len(header)) + header + array.tobytes()
    else:
        raise TypeError(f"{name} must be an int, float, str, bool, None, a tuple/list/dict of those "
                        f"or a numpy array, got {type(value).__name__} {value!r}")
    return tag + struct.pack("<Q", len(payload)) + payload


def config_fingerprint(**fields: object) -> int:
    """A stable 63-bit fingerprint of a configuration.

    Parameters
    ----------
    **fields
        Named values: ``int``, ``float``, ``str``, ``bool``, ``None``, tuples,
        lists and str-keyed dicts of those, and numpy arrays (by dtype, shape
        and bytes). Field order does not matter; types do (``True`` differs
        from ``1``, ``1`` from ``1.0``); tuples and lists encode alike.

    Returns
    -------
    int
        In ``[0, 2**63)``; the same on every machine and Python run (BLAKE2b
        of a canonical encoding, never the randomised ``hash()``).

    Raises
    ------
    TypeError
        A field has a type outside the list above.

    Examples
    --------
    >>> a = config_fingerprint(seed=0, patch_size=(256, 256), axes="YX")
    >>> a == config_fingerprint(axes="YX", patch_size=[256, 256], seed=0)
    True
    >>> a == config_fingerprint(seed=1, patch_size=(256, 256), axes="YX")
    False
    >>> 0 <= a < 2**63
    True
    """
    digest = hashlib.blake2b(_encode("fields", fields), digest_size=8, person=b"zarrsample-cfg")
    return int.from_bytes(digest.digest(), "big") >> 1


def make_state(*, epoch: int, position: int, fingerprint: int, **config_ints: int) -> dict[str, int]:
    """The resumable state of an epoch iterator: a small versioned dict of ints.

    Parameters
    ----------
    epoch, position : int >= 0
        The epoch, and how many entries of this shard were already produced.
    fingerprint : int >= 0
        :func:`config_fingerprint` of the configuration.
    **config_ints : int or bool
        Further settings checked on restore (``world_size``, ``rank``,
        ``seed``, ...); bools are stored as 0 / 1.

    Returns
    -------
    dict of str to int
        ``{"version": STATE_VERSION, "epoch", "position", "fingerprint",
        **config_ints}``, plain Python ints (JSON-safe).

    Raises
    ------
    TypeError
        A value is not an int.
    ZarrsampleError
        ``epoch``, ``position`` or ``fingerprint`` negative, or the reserved
        key ``version`` among ``config_ints``.

    Examples
    --------
    >>> make_state(epoch=2, position=10, fingerprint=7, world_size=4, shuffle=True)
    {'version': 1, 'epoch': 2, 'position': 10, 'fingerprint': 7, 'world_size': 4, 'shuffle': 1}
    """
    if "version" in config_ints:
        raise ZarrsampleError("config_ints must not hold the reserved key 'version'")
    state = {
        "version": STATE_VERSION,
        "epoch": check_int(epoch, "epoch", 0),
        "position": check_int(position, "position", 0),
        "fingerprint": check_int(fingerprint, "fingerprint", 0),
    }
    state.update({key: _int_value(key, value) for key, value in config_ints.items()})
    return state


def _int_value(name: str, value: object) -> int:
    """``value`` as a Python int; bools become 0 / 1."""
    if not isinstance(value, (bool, np.bool_, Integral)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def check_state(state: Mapping[str, int], *, expected: Mapping[str, int]) -> tuple[int, int]:
    """Validate a saved state against the current configuration.

    Parameters
    ----------
    state : mapping of str to int
        As returned by :func:`make_state` (possibly after a JSON round trip).
    expected : mapping of str to int
        The current values of the settings that must match (the fingerprint,
        ``world_size``, ``rank``, ``seed``, ...); bools count as 0 / 1.

    Returns
    -------
    epoch, position : int
        Where to resume.

    Raises
    ------
    TypeError
        ``state`` is not a mapping, or a value is not an int.
    ZarrsampleError
        A required key missing, a version other than ``STATE_VERSION``, a
        negative ``epoch`` or ``position``, or differing settings (the
        message lists each differing key with its saved and current value).

    Examples
    --------
    >>> state = make_state(epoch=1, position=5, fingerprint=9, world_size=2)
    >>> check_state(state, expected={"fingerprint": 9, "world_size": 2})
    (1, 5)
    >>> check_state(state, expected={"fingerprint": 9, "world_size": 4})
    Traceback (most recent call last):
    ...
    zarrsample_core._errors.ZarrsampleError: state does not match this configuration: world_size saved 2, now 4
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping of str to int, got {type(state).__name__} {state!r}")
    if not isinstance(expected, Mapping):
        raise TypeError(f"expected must be a mapping of str to int, got {type(expected).__name__}")
    saved = {key: _int_value(f"state[{key!r}]", value) for key, value in state.items()}
    current = {key: _int_value(f"expected[{key!r}]", value) for key, value in expected.items()}
    missing = [key for key in _REQUIRED_KEYS if key not in saved]
    if missing:
        raise ZarrsampleError(f"state must hold the keys {list(_REQUIRED_KEYS)}, missing {missing}")
    if saved["version"] != STATE_VERSION:
        raise ZarrsampleError(f"state version must be {STATE_VERSION}, got {saved['version']}")
    differences = [
        f"{key} saved {saved[key] if key in saved else 'nothing'}, now {value}"
        for key, value in current.items()
        if saved.get(key) != value
    ]
    if differences:
        raise ZarrsampleError("state does not match this configuration: " + "; ".join(differences))
    for key in ("epoch", "position"):
        if saved[key] < 0:
            raise ZarrsampleError(f"state[{key!r}] must be >= 0, got {saved[key]}")
    return saved["epoch"], saved["position"]


def resume_point(
    state: Mapping[str, int] | None, epoch: int | None, config: dict[str, int], *, drop_remainder: bool
) -> tuple[int, int]:
    """``(epoch, position)`` an epoch iterator starts at, given an optional saved ``state``.

    A state saved at the end of an epoch lets another ``epoch`` start from
    its beginning; one saved inside an epoch resumes that epoch only.

    Raises
    ------
    ZarrsampleError
        ``state`` comes from another configuration, or was saved inside
        another epoch than ``epoch``.
    """
    position = 0
    if state is not None:
        saved_epoch, position = check_state(state, expected=config)
        if epoch is not None and epoch != saved_epoch:
            total = shard_length(
                config["n_patches"], rank=config["rank"], world_size=config["world_size"],
                worker=config["worker"], num_workers=config["num_workers"], drop_remainder=drop_remainder,
            )
            if position < total:
                raise ZarrsampleError(
                    f"epoch={epoch} but the state was saved inside epoch {saved_epoch} "
                    f"({position} of {total} samples): resume epoch {saved_epoch} first"
                )
            position = 0  # the saved epoch was finished: `epoch` starts from its beginning
        else:
            epoch = saved_epoch
    return (0 if epoch is None else check_int(epoch, "epoch")), position
