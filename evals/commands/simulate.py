"""`personasim simulate` (filled in by its issue)."""


def simulate() -> None:
    raise SystemExit("not built yet")
