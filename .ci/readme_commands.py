"""Print the README's set-up commands, one per line, exactly as a reader copies them.

The commands are the non-comment lines of the first ```bash block under the heading
"## Set up, build the book, run the tests" (a line ending in a backslash continues on the next).
CI runs what this prints, so CI cannot drift from the README.

    python .ci/readme_commands.py [README.md]
"""
import re
import sys
from pathlib import Path

HEADING = "## Set up, build the book, run the tests"


def readme_commands(text: str, heading: str = HEADING) -> list[str]:
    """The shell commands of the first ```bash block under `heading` (comments and blanks dropped)."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    except StopIteration:
        raise ValueError(f"README has no heading {heading!r}") from None
    commands, block, current = [], None, ""
    for line in lines[start + 1:]:
        if block is None:
            if re.match(r"^#{1,2} ", line):          # the next section: no block under the heading
                break
            if re.match(r"^\s*```+\s*(bash|sh|shell|console)\s*$", line):
                block = True
            continue
        if line.strip().startswith("```"):
            break
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        commands.append(current + stripped)
        current = ""
    if block is None:
        raise ValueError(f"no ```bash block under {heading!r}")
    if current:
        commands.append(current.rstrip())
    if not commands:
        raise ValueError(f"the ```bash block under {heading!r} holds no command")
    return commands


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "README.md"
    try:
        commands = readme_commands(path.read_text(encoding="utf-8"))
    except ValueError as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 1
    print("\n".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
