"""A wrapper that keeps secrets out of ``repr``/``str``, logs, tracebacks and debug pages."""


class Secret:
    """A secret string (client secret, token). Call ``reveal()`` at the one place the real
    value is needed, such as an outbound request; everything else sees ``********``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
