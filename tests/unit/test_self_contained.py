"""The repository needs nothing beside it: no code, test, benchmark, Makefile rule or CI script
names a path outside the checkout. A user's clone has no reference folder next to it, so such a
path works on the build machine and fails everywhere else.

Two checks: this scan of the source text (parent-relative escapes, absolute paths of a build
machine, `__file__`-relative paths that climb above the repository root), and at run time the
audit-hook guard in `tests/fixtures/outside_reads.py`, which fails a test that opens a path
beside the checkout. A line that must hold such text for another reason (a value a test feeds
in to see it rejected) carries the marker `outside-path-ok` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.outside_reads import is_beside_checkout, take_recorded, watching_checkout

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("src", "tests", "benchmarks", ".ci", "Makefile", "pyproject.toml")
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
MARKER = "outside-path-ok"
# This file holds examples of what the scan must find; it is the one file not scanned.
SELF = Path(__file__).resolve()
DOTDOT = "." * 2

TEXT_RULES: dict[str, re.Pattern[str]] = {
    # `../`, an escaped `..\\`, a quoted `..` (not an ellipsis such as `"...\\n"`)
    "a parent-relative path": re.compile(r"(?<!\.)\.\.(?:/|\\\\)|[\"']\.\.[\"']|\bos\.pardir\b"),
    "an absolute path of a build machine": re.compile(
        r"(?<![\w.~%-])/(?:work|home|Users|root|mnt|srv|opt/build)/"
    ),
}
# Path(__file__).resolve().parents[2].parent ..., os.path.dirname(os.path.dirname(__file__))
_FILE_CHAIN = re.compile(
    r"__file__\)?(?:\.resolve\(\)|\.absolute\(\))?(?P<chain>(?:\.parent\b|\.parents\[\d+\])+)"
)
_DIRNAME_CHAIN = re.compile(
    r"(?P<chain>(?:os\.path\.dirname\(\s*)+)(?:os\.path\.(?:abspath|realpath)\(\s*)?__file__"
)
_ROOT_NAME = re.compile(
    r"^\s*(?P<name>[A-Za-z_]\w*)\s*(?::[^=]+)?=\s*Path\(__file__\)\S*", re.MULTILINE
)


def scanned_files(root: Path = ROOT) -> Iterator[Path]:
    for name in SCANNED:
        top = root / name
        if top.is_file():
            yield top
        elif top.is_dir():
            for path in sorted(top.rglob("*")):
                if path.is_file() and not SKIPPED_DIRS.intersection(path.parts):
                    yield path


def _scanned() -> Iterator[Path]:
    return (p for p in scanned_files() if p.resolve() != SELF)


def _levels(chain: str) -> int:
    """How many directories up from the file a `.parent` / `.parents[k]` chain goes."""
    up = chain.count(".parent") - chain.count(".parents[")
    return up + sum(int(k) + 1 for k in re.findall(r"\.parents\[(\d+)\]", chain))


def escapes(relative: Path, text: str) -> list[str]:
    """What in `text` (the file at `relative` under the root) names a path outside the root."""
    found: list[str] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if MARKER in line:
            continue
        for what, rule in TEXT_RULES.items():
            match = rule.search(line)
            if match:
                found.append(f"{relative}:{number}: {what}: {match.group(0)!r}")
    if relative.suffix != ".py":
        return found
    root_level = len(relative.parts)  # parents[len(parts) - 1] is the repository root
    for pattern in (_FILE_CHAIN, _DIRNAME_CHAIN):
        for match in pattern.finditer(text):
            chain = match.group("chain")
            level = chain.count("dirname(") if pattern is _DIRNAME_CHAIN else _levels(chain)
            if level > root_level:
                number = text.count("\n", 0, match.start()) + 1
                found.append(
                    f"{relative}:{number}: climbs {level} directories from the file, "
                    f"above the repository root ({root_level}): {match.group(0)!r}"
                )
    for match in _ROOT_NAME.finditer(text):
        chain_match = _FILE_CHAIN.search(match.group(0))
        if chain_match is None or _levels(chain_match.group("chain")) != root_level:
            continue
        above = re.compile(rf"\b{match.group('name')}\.parents?\b")
        for number, line in enumerate(lines, 1):
            if MARKER not in line and above.search(line):
                found.append(f"{relative}:{number}: goes above the repository root: {line!r}")
    return found


def test_repository__source_text__names_no_path_outside_the_checkout() -> None:
    found: list[str] = []
    for path in _scanned():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not text
        found += escapes(path.relative_to(ROOT), text)
    assert found == []


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        ("tests/fixtures/x.py", 'P = Path(__file__).resolve().parents[2].parent / "reference"'),
        ("tests/fixtures/x.py", "P = Path(__file__).parents[3]"),
        ("tests/x.py", "P = Path(__file__).parent.parent.parent"),
        ("src/x.py", "P = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))"),
        ("tests/x.py", 'ROOT = Path(__file__).resolve().parents[1]\nP = ROOT.parent / "x"'),
        ("tests/x.py", f'SPEC = "{DOTDOT}/reference/openapi.yaml"'),
        ("tests/x.py", f'SPEC = Path("{DOTDOT}") / "reference"'),
        ("tests/x.py", f'SPEC = "C:\\\\repo\\\\{DOTDOT}\\\\reference"'),
        ("Makefile", "\tcat /work/reference/notes.md"),
        (".ci/run", f"cd {DOTDOT}/{DOTDOT}"),
    ],
)
def test_escapes__paths_outside_the_root__each_found(relative: str, text: str) -> None:
    assert len(escapes(Path(relative), text)) == 1


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        ("tests/fixtures/x.py", 'D = Path(__file__).resolve().parents[1] / "data"'),
        ("tests/fixtures/x.py", 'ROOT = Path(__file__).resolve().parents[2] / "database"'),
        ("src/a/b/c/d.py", 'C = Path(__file__).resolve().parents[4] / "config"'),
        ("src/x.py", "from ..models import Span  # a relative import, not a path"),
        ("src/x.py", 'URL = "https://example.com/home/page"'),
        ("tests/x.py", 'SOURCE = "class Agent: ...\\n"'),
        ("tests/x.py", f'NAME = "{DOTDOT}/escape"  # {MARKER}: a name that must be rejected'),
        (".ci/run", 'cd "$(dirname "$0")/' + DOTDOT + '"'),
    ],
)
def test_escapes__paths_inside_the_root__none_found(relative: str, text: str) -> None:
    assert escapes(Path(relative), text) == []


def test_outside_reads_guard__sibling_of_the_checkout__beside_it() -> None:
    root, parent = Path("/srv/code/repo"), Path("/srv/code")
    assert is_beside_checkout("/srv/code/reference/spec.yaml", root, parent, ())
    assert is_beside_checkout("/srv/code/repo/../reference/spec.yaml", root, parent, ())
    assert not is_beside_checkout("/srv/code/repo/tests/data/x.json", root, parent, ())
    assert not is_beside_checkout("/usr/lib/python3.11/os.py", root, parent, ())
    assert not is_beside_checkout(
        "/srv/code/venv/lib/x.py", root, parent, (Path("/srv/code/venv"),)
    )
    # the temporary directory holds the clone: it must not hide the clone's neighbours
    tmp_root, tmp_parent = Path("/tmp/c/repo"), Path("/tmp/c")
    assert is_beside_checkout("/tmp/c/reference/x", tmp_root, tmp_parent, (Path("/tmp"),))


def test_outside_reads_guard__open_beside_the_checkout__recorded(tmp_path: Path) -> None:
    checkout = tmp_path / "repo"
    (checkout / "tests").mkdir(parents=True)
    (checkout / "tests" / "data.json").write_text("{}", encoding="utf-8")
    target = tmp_path / "no-such-reference-folder" / "spec.yaml"
    with watching_checkout(checkout, tmp_path):
        with pytest.raises(FileNotFoundError):
            target.open(encoding="utf-8")
        (checkout / "tests" / "data.json").read_text(encoding="utf-8")
    assert take_recorded() == [f"open {target}"]
