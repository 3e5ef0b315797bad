"""Check every source cited in jets_calls.yaml against checkouts of the repositories it names.

Not a test (a fresh clone has no copy of Jets): run it by hand after editing the data file,

    python tests/data/verify_sources.py rubyonjets/jets=/path/to/jets.git \
        tongueroo/cfn-status=/path/to/cfn-status boltops-tools/aws-logs=/path/to/aws-logs.git

Each source is `<tag>:<path>` in rubyonjets/jets or `<owner/repo>:<path>` (read at HEAD, or from
a plain directory); the file must exist and contain the entry's `evidence`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

DATA = Path(__file__).with_name("jets_calls.yaml")
JETS = "rubyonjets/jets"


def read(repos: dict[str, Path], source: str) -> str | None:
    where, path = source.split(":", 1)
    repo, rev = (where, "HEAD") if "/" in where else (JETS, where)
    root = repos.get(repo)
    if root is None:
        return None
    if (root / path).is_file():
        return (root / path).read_text()
    shown = subprocess.run(
        ["git", f"--git-dir={root}", "show", f"{rev}:{path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return shown.stdout if shown.returncode == 0 else ""


def main(argv: list[str]) -> int:
    repos = {name: Path(path) for name, path in (a.split("=", 1) for a in argv)}
    problems = unchecked = 0
    for call in yaml.safe_load(DATA.read_text())["calls"]:
        for source in call["sources"]:
            text = read(repos, source)
            if text is None:
                unchecked += 1
            elif call["evidence"] not in text:
                problems += 1
                print(f"{source}: no {call['evidence']!r} ({call['actions']})")
    print(f"{problems} problems, {unchecked} sources not checked (no checkout given)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
