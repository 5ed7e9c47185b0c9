"""The trivial job of the RQ rows: RQ's worker imports it by its dotted name."""


def noop(i: int) -> None:
    return None
