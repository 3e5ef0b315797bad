"""`make mutate`: mutation-test the core, the IAM edge, the registry and request parsing.

mutmut 3 reads one configuration (``[tool.mutmut]`` in the working directory's pyproject.toml),
expects the package right under ``src/`` and mutates everything it is given against one test
selection. This project's package lives in ``src/function`` and each module is best tested by the
few test files that exercise it (the pure core by the pure-core tests, the IAM edge by the engine
and lifecycle tests), so this driver runs mutmut once per module, each in a scratch copy of the
project under ``build/mutate/<module>/`` laid out as mutmut expects, with that module alone to
mutate and its own test files to run.

For every module it prints: mutants, killed, score, the mutants judged equivalent (listed, with the
reason, in ``mutate/equivalent.toml``) and the score without them. Equivalent mutants are keyed by
module, function and the lines the mutation changes (see ``mutant_key``), never by mutmut's mutant
number, which shifts whenever a function gains or loses a mutable node.

    python mutate/run.py                  # every default module (reconcile.py only by name)
    python mutate/run.py plan.py spec.py  # some modules
    python mutate/run.py --all            # reconcile.py too (hours: some 2,800 mutants)
    python mutate/run.py --survivors      # also print each survivor's diff and its TOML key
    python mutate/run.py --reuse          # the table of the last run, with today's judgements
    python mutate/run.py --retest plan.py # the last run's survivors again, against today's tests
    python mutate/run.py --resume reconcile.py  # run what a stopped run left (and what changed)
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "jets_deploy_iam"
SOURCE = ROOT / "src" / "function" / PACKAGE
WORK = ROOT / "build" / "mutate"
EQUIVALENT = ROOT / "mutate" / "equivalent.toml"
#: Files besides src/ and tests/ that a selected test reads from the project root.
ALSO_COPY = ("template.yaml", "events", "examples", "stackset")
#: mutmut's separator between class and method in a mutant's name (``xǁClassǁmethod__mutmut_3``).
CLASS_SEPARATOR = "\u01c1"

# Test selections: the files that reach a module, kept small enough that each run takes minutes.
PURE_CORE = ("tests/test_plan.py", "tests/test_spec.py", "tests/test_policy.py")
ENGINE = ("tests/test_iam_engine.py",)
#: The call path's retries and pacing, lost answers, progress lines (seconds, in virtual time).
THROTTLING = ("tests/test_throttling.py",)
LIFECYCLE = ("tests/test_lifecycle.py", "tests/test_lifecycle_attacks.py")
#: The attack files: rollbacks, hand-backs, takeovers, revert deploys, where the lifecycle meets
#: the registry's claims (in-process moto, a tenth of a second a test).
ATTACKS = (
    "tests/test_hand_back_attacks.py",
    "tests/test_takeover_rollback_attacks.py",
    "tests/test_rollback_and_cleanup_attacks.py",
    "tests/test_revert_deploy_attacks.py",
    "tests/test_rollback_repeat_attacks.py",
    "tests/test_integration_attacks.py",
)
#: The drift check and its corrections (the Controller's check_drift and what it calls).
DRIFT = ("tests/test_enforce.py",)


@dataclass(frozen=True)
class Module:
    """One module to mutate (its path under the package) and the tests that judge its mutants."""

    path: str
    tests: tuple[str, ...]
    #: mutated by a plain ``make mutate``; the others only when named (or with --all)
    default: bool = True
    #: a mutant whose tests run this many times longer than the clean run's counts as looping
    #: (a timeout, killed). mutmut's 15 suits millisecond tests; for tests of whole lifecycles a
    #: surviving mutant runs in about the clean time, so 4 times is margin enough.
    timeout_multiplier: float = 15.0

    @property
    def slug(self) -> str:
        return self.path.removesuffix(".py").replace("/", "-")

    @property
    def dotted(self) -> str:
        return f"{PACKAGE}." + self.path.removesuffix(".py").replace("/", ".")


MODULES: tuple[Module, ...] = (
    # The pure core.
    Module("changes.py", PURE_CORE),
    Module("plan.py", PURE_CORE),
    Module("ownership.py", PURE_CORE),
    Module("undo.py", PURE_CORE),
    Module("spec.py", PURE_CORE),
    Module("policy.py", PURE_CORE),
    Module("profiles/baseline.py", PURE_CORE),
    Module("profiles/scoped.py", (*PURE_CORE, "tests/test_jets_calls.py")),
    Module("profiles/naming.py", (*PURE_CORE, "tests/test_jets_calls.py")),
    # The IAM edge.
    Module("iam/preflight.py", ENGINE),
    Module("iam/applier.py", (*ENGINE, *THROTTLING)),
    Module("iam/reader.py", ENGINE),
    # A mutant that stops the retry loop from advancing spins until its timeout: 4x, not 15x.
    Module("iam/callpath.py", (*THROTTLING, *ENGINE), timeout_multiplier=4.0),
    # The registry.
    Module("registry/model.py", ("tests/test_registry_model.py", "tests/test_lifecycle.py")),
    Module("registry/store.py", ("tests/test_registry_store.py", "tests/test_lifecycle.py")),
    # Request parsing and the answer.
    Module("request.py", ("tests/test_request.py", "tests/test_handler.py")),
    Module("response.py", ("tests/test_request.py", "tests/test_handler.py")),
    # The lifecycle: some 2,800 mutants, a survivor costing a minute of tests: only when named.
    Module(
        "reconcile.py",
        (*ENGINE, *LIFECYCLE, *ATTACKS, *DRIFT),
        default=False,
        timeout_multiplier=4.0,
    ),
)


@dataclass
class Outcome:
    """A module's mutants by status, and the keys of the survivors."""

    module: Module
    statuses: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.statuses)

    @property
    def killed(self) -> int:
        return sum(1 for s in self.statuses.values() if s in KILLED)

    def survivors(self) -> list[str]:
        return sorted(n for n, s in self.statuses.items() if s not in KILLED)


#: mutmut's exit codes that count as a kill: a failing test, pytest's internal error (a mutant
#: that breaks import), a timeout (a mutant that loops), a mutant the type checker rejects.
KILLED = frozenset({"killed", "timeout", "caught by type check", "segfault"})
STATUS_BY_EXIT_CODE = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "caught by type check",
    -11: "segfault",
    -9: "segfault",
}


def prepare(module: Module, workdir: Path) -> None:
    """A scratch project mutmut understands: the package under src/, the tests, the pyproject
    with a ``[tool.mutmut]`` table naming this module and its tests."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "src").mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(SOURCE, workdir / "src" / PACKAGE, ignore=ignore)
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=ignore)
    for name in ALSO_COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, workdir / name)
    table = {
        "source_paths": ["src"],
        "only_mutate": [f"src/{PACKAGE}/{module.path}"],
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-m", "not sam"],
        "also_copy": list(ALSO_COPY),
        "use_git_change_detection": False,
        "timeout_multiplier": module.timeout_multiplier,
        # A mutant mypy --strict rejects could never be committed (make typecheck): caught.
        # (mutmut recognises mypy's JSON by a "mypy" element in the command.)
        "type_check_command": [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-warn-unused-ignores",  # mutmut's generated lines carry blanket ignores
            "--output",
            "json",
            f"src/{PACKAGE}/{module.path}",
        ],
    }
    # (A test file this checkout does not have yet, as when measuring an older commit, is left
    # out and said so.)
    tests = [t for t in module.tests if (ROOT / t).exists()]
    if len(tests) < len(module.tests):
        print(f"  {module.path}: no {sorted(set(module.tests) - set(tests))} here", flush=True)
    if not tests:
        raise SystemExit(f"none of the tests of {module.path} exists: {module.tests}")
    table["pytest_add_cli_args_test_selection"] = tests
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    pyproject = (ROOT / "pyproject.toml").read_text()
    (workdir / "pyproject.toml").write_text(pyproject + "\n".join(lines) + "\n")


def refresh(workdir: Path) -> None:
    """Today's source and tests in an earlier run's scratch copy. mutmut keeps the verdicts of
    every function whose text is unchanged, mutates the changed ones afresh and maps the tests
    it has not seen to the functions they call. The test selection must not have changed (mutmut
    would start over)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("tests", f"src/{PACKAGE}"):
        shutil.rmtree(workdir / name)
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=ignore)
    shutil.copytree(SOURCE, workdir / "src" / PACKAGE, ignore=ignore)


def spent_seconds(workdir: Path) -> float:
    """The time mutmut spent on a module, over every run, resumption and retest (0 if a run was
    stopped before it could say)."""
    seconds = workdir / "seconds"
    return float(seconds.read_text()) if seconds.exists() else 0.0


def record_seconds(workdir: Path, more: float) -> None:
    (workdir / "seconds").write_text(f"{spent_seconds(workdir) + more:.1f}\n")


def run_mutmut(workdir: Path, log: Path, children: int, mutants: Sequence[str] = ()) -> None:
    """mutmut's run (of ``mutants`` only, if named), its output kept in ``log`` (its progress
    line rewrites itself)."""
    mutmut = Path(sys.executable).parent / "mutmut"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("w") as out:
        done = subprocess.run(
            [str(mutmut), "run", "--max-children", str(children), *mutants],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"mutmut failed in {workdir} (exit {done.returncode}):\n{tail}")


def read_outcome(module: Module, workdir: Path) -> Outcome:
    """Every mutant's status from mutmut's meta file, and the diff and key of each mutant."""
    mutated = workdir / "mutants" / "src" / PACKAGE / module.path
    meta = json.loads(mutated.with_name(mutated.name + ".meta").read_text())
    outcome = Outcome(module)
    for name, code in meta["exit_code_by_key"].items():
        outcome.statuses[name] = (
            "not checked" if code is None else STATUS_BY_EXIT_CODE.get(code, "suspicious")
        )
    sources = function_sources(mutated.read_text())
    for name in outcome.statuses:
        diff = mutant_diff(sources, name)
        outcome.diffs[name] = diff
        outcome.keys[name] = mutant_key(module, name, diff)
    return outcome


def function_sources(text: str) -> dict[str, str]:
    """Every function of the mutated file by name (originals and mutants), dedented."""
    lines = text.splitlines()
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            segment = "\n".join(lines[first - 1 : node.end_lineno])
            found[node.name] = textwrap.dedent(segment)
    return found


def local_name(mutant: str) -> str:
    """``pkg.mod.xǁPlanǁof__mutmut_3`` -> ``xǁPlanǁof__mutmut_3``."""
    head = mutant.split(CLASS_SEPARATOR)[0]
    return head.rpartition(".")[2] + mutant[len(head) :]


def original_function(mutant: str) -> str:
    """The function a mutant belongs to, as a person names it (``Plan.of``, ``plan_reconcile``)."""
    local = local_name(mutant).partition("__mutmut_")[0]
    if CLASS_SEPARATOR in local:
        _, cls, method = local.split(CLASS_SEPARATOR)
        return f"{cls}.{method}"
    return local.removeprefix("x_")


def mutant_diff(sources: dict[str, str], mutant: str) -> str:
    """The lines the mutation changes, as a unified diff without position headers."""
    local = local_name(mutant)
    base = local.partition("__mutmut_")[0]
    plain = original_function(mutant).rpartition(".")[2]
    original = sources.get(base + "__mutmut_orig", "").replace(base + "__mutmut_orig", plain, 1)
    changed = sources.get(local, "").replace(local, plain, 1)
    lines = difflib.unified_diff(original.splitlines(), changed.splitlines(), lineterm="", n=0)
    return "\n".join(line for line in lines if line[:2] not in ("--", "++", "@@"))


def mutant_key(module: Module, mutant: str, diff: str) -> str:
    """A name for a mutant that survives edits elsewhere: module, function, changed lines.

    Stable while the function keeps its name and the mutated lines keep their text; it changes
    (and the mutant must be judged again) when those lines are edited, reformatted or moved to
    another function. Two identical mutations of the same text in one function share a key.
    """
    changed = [" ".join(line.split()) for line in diff.splitlines() if line[:1] in "+-"]
    changed = [line for line in changed if line not in ("+", "-")]
    return f"{module.path} | {original_function(mutant)} | " + " / ".join(changed)


@dataclass(frozen=True)
class Equivalent:
    """A mutant judged to change no behaviour, and why. ``text_only``: it changes the wording of
    a log line or of a sentence in an answer, nothing a program acts on (``kind = "text"``);
    counted apart, since a person may call that a change."""

    key: str
    reason: str
    text_only: bool = False


def load_equivalents(path: Path = EQUIVALENT) -> dict[str, Equivalent]:
    """The checked-in judgements (``[[equivalent]]`` tables: module, function, change, reason)."""
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    found: dict[str, Equivalent] = {}
    for entry in data.get("equivalent", []):
        key = f"{entry['module']} | {entry['function']} | {entry['change']}"
        found[key] = Equivalent(key, entry["reason"], entry.get("kind") == "text")
    return found


def row(outcome: Outcome, equivalents: dict[str, Equivalent]) -> list[str]:
    """module | mutants | killed | score | equivalent | of which text only | without equivalent |
    no test | not run | time. A mutant not run yet (a stopped run) counts as not killed."""
    untested = sum(1 for s in outcome.statuses.values() if s == "no tests")
    not_run = sum(1 for s in outcome.statuses.values() if s == "not checked")
    judgements = [
        equivalents[k] for n in outcome.survivors() if (k := outcome.keys[n]) in equivalents
    ]
    equivalent = len(judgements)
    text_only = sum(1 for j in judgements if j.text_only)
    score = 100.0 * outcome.killed / outcome.total if outcome.total else 100.0
    judged = outcome.total - equivalent
    without = 100.0 * outcome.killed / judged if judged else 100.0
    return [
        outcome.module.path,
        str(outcome.total),
        str(outcome.killed),
        f"{score:.1f}%",
        str(equivalent),
        str(text_only),
        f"{without:.1f}%",
        str(untested),
        str(not_run),
        f"{outcome.seconds:.0f} s",
    ]


def table(outcomes: Sequence[Outcome], equivalents: dict[str, Equivalent]) -> str:
    """The markdown table the issue asks for."""
    head = [
        "module",
        "mutants",
        "killed",
        "score",
        "equivalent",
        "of which text only",
        "without equivalent mutants",
        "reached by no test",
        "not run yet",
        "time",
    ]
    rows = [head, ["---"] * len(head)] + [row(o, equivalents) for o in outcomes]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def survivor_report(outcome: Outcome, equivalents: dict[str, Equivalent]) -> str:
    """Each survivor not judged equivalent: its status, key (as the TOML entry) and diff."""
    parts: list[str] = []
    for name in outcome.survivors():
        key = outcome.keys[name]
        if key in equivalents:
            continue
        module, function, change = key.split(" | ", 2)
        parts.append(
            f"# {name}: {outcome.statuses[name]}\n"
            f"[[equivalent]]\nmodule = {_toml(module)}\nfunction = {_toml(function)}\n"
            f'change = {_toml(change)}\nreason = ""\n'
            + textwrap.indent(outcome.diffs[name], "#   ")
        )
    return "\n".join(parts)


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; non-ASCII stays readable)."""
    return json.dumps(text, ensure_ascii=False)


def select(names: Iterable[str], everything: bool = False) -> list[Module]:
    """The modules named on the command line (the default ones when none is)."""
    wanted = list(names)
    if not wanted:
        return [m for m in MODULES if m.default or everything]
    by_path = {m.path: m for m in MODULES}
    unknown = [n for n in wanted if n not in by_path]
    if unknown:
        raise SystemExit(f"unknown module(s) {unknown}; known: {sorted(by_path)}")
    return [by_path[n] for n in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", help="module paths under the package (default all)")
    parser.add_argument("--survivors", action="store_true", help="print each survivor's diff")
    parser.add_argument("--reuse", action="store_true", help="report an earlier run, run nothing")
    parser.add_argument("--all", action="store_true", help="also the modules run only by name")
    rerun = parser.add_mutually_exclusive_group()
    rerun.add_argument(
        "--retest",
        action="store_true",
        help="test the last run's survivors (not judged equivalent) again against today's tests",
    )
    rerun.add_argument(
        "--resume",
        action="store_true",
        help="run the mutants an earlier run left (stopped) or that changed since, today's tests",
    )
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    equivalents = load_equivalents()
    outcomes: list[Outcome] = []
    started = time.monotonic()
    for module in select(args.modules, args.all):
        workdir = WORK / module.slug
        begun = time.monotonic()
        if args.retest or args.resume:
            refresh(workdir)
            if args.resume:
                run_mutmut(workdir, workdir / "resume.log", args.children)
            else:
                earlier = read_outcome(module, workdir)
                again = [
                    n
                    for n in earlier.survivors()
                    if earlier.statuses[n] != "not checked" and earlier.keys[n] not in equivalents
                ]
                print(f"testing {len(again)} survivors of {module.path} again", flush=True)
                if again:
                    run_mutmut(workdir, workdir / "retest.log", args.children, again)
            record_seconds(workdir, time.monotonic() - begun)
        elif not args.reuse:
            print(f"mutating {module.path} against {' '.join(module.tests)}", flush=True)
            prepare(module, workdir)
            (workdir / "seconds").unlink(missing_ok=True)
            run_mutmut(workdir, workdir / "mutmut.log", args.children)
            record_seconds(workdir, time.monotonic() - begun)
        outcome = read_outcome(module, workdir)
        outcome.seconds = spent_seconds(workdir)
        outcomes.append(outcome)
        print(table([outcome], equivalents).splitlines()[-1], flush=True)
        if args.survivors:
            print(survivor_report(outcome, equivalents), flush=True)
    print()
    print(table(outcomes, equivalents))
    if not args.reuse:
        print(f"\n{len(outcomes)} modules in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
