"""Greetings, the example package."""

import sys

__version__ = "1.0.0"


def hello(name: str = "world") -> str:
    if not name.strip():
        raise ValueError("name must not be blank")
    return f"Hello, {name.strip()}!"


def main() -> int:
    args = sys.argv[1:]
    if args == ["--version"]:
        print(__version__)
        return 0
    print(hello(" ".join(args) or "world"))
    return 0
