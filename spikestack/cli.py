"""Command-line entry point (placeholder until the spine lands)."""


def main(argv: list[str] | None = None) -> int:
    return 0
