"""The library runs on Windows and macOS too: no POSIX-only modules or calls, no hard-coded POSIX paths.
(Windows itself is not tested here; this guards what can be checked by reading the code.)"""

import ast
from pathlib import Path

import pytest

LIBRARY = sorted((Path(__file__).resolve().parent.parent / "minprune").rglob("*.py"))
POSIX_MODULES = {"fcntl", "signal", "resource", "pwd", "grp", "termios", "tty", "pty", "posix"}
POSIX_CALLS = {"fork", "getuid", "geteuid", "getgid", "setsid", "killpg", "mkfifo", "symlink", "sync"}


def posix_only_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in POSIX_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in POSIX_MODULES:
            found.append(node.module)
        elif isinstance(node, ast.Attribute) and node.attr in POSIX_CALLS and getattr(node.value, "id", "") == "os":
            found.append(f"os.{node.attr}")
        elif isinstance(node, ast.Constant) and str(node.value).startswith(("/tmp", "/dev/")):
            found.append(repr(node.value))
    return found


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_no_posix_only_calls(path):
    assert posix_only_uses(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_scanner_finds_them():
    code = "import fcntl\nfrom signal import SIGKILL\nimport os\nos.fork()\nopen('/tmp/x')\n"
    assert posix_only_uses(ast.parse(code)) == ["fcntl", "signal", "os.fork", "'/tmp/x'"]
