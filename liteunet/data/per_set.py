"""Training options given once for all sets or per set: ``2 bcdata=4`` on the command line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["values_per_set"]


def values_per_set(values: Any, names: Sequence[str], option: str, default: Any = None) -> list[Any]:
    """Each training set's value of an option: one value for every set, or a mapping by set name
    with ``"*"`` for the sets not named (else ``default``).

    Args:
        values: one value, or a mapping from set names (and ``"*"``) to values.
        names: the training sets, in order.
        option: the option's name, for the error a name that is not a training set gets.
        default: the value of sets a mapping does not name when it has no ``"*"``.

    Returns:
        One value per name of ``names``.

    Example:
        >>> values_per_set({"bcdata": 4.0}, ["crc", "bcdata"], "sigma", default=2.0)
        [2.0, 4.0]
        >>> values_per_set(3.0, ["crc", "bcdata"], "sigma")
        [3.0, 3.0]
    """
    if not isinstance(values, Mapping):
        return [values] * len(names)
    unknown = set(values) - set(names) - {"*"}
    if unknown:
        raise ValueError(f"{option} names {sorted(unknown)}, which are not among the training sets {list(names)}")
    return [values.get(name, values.get("*", default)) for name in names]
