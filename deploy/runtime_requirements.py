"""The runtime part of requirements.lock, hashes kept: what the Dockerfile installs (stdlib only, no network).

requirements.lock is the whole environment (runtime, report, dev, the build backend), each package with
its hashes and pip-compile's "# via" lines. The runtime is every package that requirements-kafka.txt
pins, and every package one of those needs, read from the "# via" lines; nothing of the report or dev
extras. tests/unit/test_deploy.py checks the result against the installed packages' own metadata.

    python deploy/runtime_requirements.py < requirements.lock > runtime.lock
    python deploy/runtime_requirements.py --packages setuptools < requirements.lock > build.lock
"""

from __future__ import annotations

import argparse
import re
import sys

RUNTIME_SOURCE = "-r requirements-kafka.txt"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==\S+")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def blocks(lock: str) -> dict[str, tuple[str, set[str]]]:
    """Each pinned package: its lines as written (pin, hashes, via) and what it is "via"."""
    found: dict[str, tuple[str, set[str]]] = {}
    name, lines, via, in_via = "", [], set(), False
    for line in [*lock.splitlines(), ""]:
        pin = _PIN.match(line)
        if pin or not line.startswith(" "):
            if name:
                found[name] = ("\n".join(lines), via)
            name, lines, via, in_via = (
                (normalized(pin.group(1)), [line], set(), False) if pin else ("", [], set(), False)
            )
            continue
        lines.append(line)
        text = line.strip()
        if text.startswith("# via"):
            in_via = True
            if rest := text.removeprefix("# via").strip():
                via.add(rest if rest.startswith("-r") else normalized(rest))
        elif in_via and text.startswith("#"):
            item = text.lstrip("#").strip()
            via.add(item if item.startswith("-r") else normalized(item))
    return found


def runtime(lock: str) -> list[str]:
    """The runtime packages' names, in the lock's order."""
    packages = blocks(lock)
    chosen = {name for name, (_, via) in packages.items() if RUNTIME_SOURCE in via}
    while added := {name for name, (_, via) in packages.items() if name not in chosen and via & chosen}:
        chosen |= added
    return [name for name in packages if name in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", nargs="+", metavar="NAME", help="these packages only (the build stage's)")
    args = parser.parse_args(argv)
    lock = sys.stdin.read()
    packages = blocks(lock)
    names = [normalized(n) for n in args.packages] if args.packages else runtime(lock)
    missing = [name for name in names if name not in packages]
    if missing:
        sys.stderr.write(f"Error: not in the lock: {', '.join(missing)}\n")
        return 1
    sys.stdout.write(
        "# Generated from requirements.lock by deploy/runtime_requirements.py: install with --require-hashes.\n"
    )
    sys.stdout.write("\n".join(packages[name][0] for name in names) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
