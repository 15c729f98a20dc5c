"""Argument checks shared across the package, with the errors users see."""


def check_int(value: object, name: str, minimum: int) -> int:
    """Return ``value`` if it is an integer (not a bool) >= ``minimum``.

    Raises:
        ValueError: naming ``name``, the allowed range and the value given.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')
    return value
