"""``minicnn exercise ACTION``: write each layer's math yourself, and be told exactly what is wrong.

    minicnn exercise list [--dir DIR]                   the exercises in order, what each builds on, which are done
    minicnn exercise start NAME [--dir DIR] [--force]   write DIR/NAME.py: signatures, shapes, formulas, no solution
    minicnn exercise check NAME [--dir DIR]             the checks in order, stopping at the first failure
    minicnn exercise hint NAME [--dir DIR] [--tier N]   the next of three hints
    minicnn exercise train [--dir DIR] [--limit N]      MnistCNN from your layers, trained beside the reference

DIR is ./minicnn-exercises unless ``--dir`` names another folder.  The exercises, the checks and the
diagnoses are minicnn/exercises/; docs/exercises.md walks through them.
"""
from __future__ import annotations

import argparse
import textwrap

from minicnn.paths import path_argument

HELP = "write each layer's math yourself: start, check (with a diagnosis), hint, train"
TIERS = ("a question", "the key formula", "the shapes of every array")


def _names():
    from minicnn.exercises.catalog import EXERCISES

    return list(EXERCISES)


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(backend="numpy")  # the checks and the training compare with the readable NumPy reference
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument("--dir", type=path_argument, default=None, metavar="DIR",
                        help="the workspace folder (default: ./minicnn-exercises)")
    name = argparse.ArgumentParser(add_help=False)
    name.add_argument("name", choices=_names(), metavar="NAME", help=f"one of: {', '.join(_names())}")

    actions.add_parser("list", parents=[folder], help="the exercises in the suggested order, and which are done")
    start = actions.add_parser("start", parents=[name, folder], help="write the starter file of an exercise")
    start.add_argument("--force", action="store_true", help="write a fresh starter file over an existing one")
    check = actions.add_parser("check", parents=[name, folder], help="check your file, with a diagnosis")
    check.add_argument("--time-limit", type=_positive(float), default=None, metavar="S",
                       help="seconds each stage of the check may run (default 60)")
    check.add_argument("--examples", type=_positive(int), default=25, metavar="N",
                       help="drawn cases (default 25)")
    hint = actions.add_parser("hint", parents=[name, folder], help="the next of three hints")
    hint.add_argument("--tier", type=int, choices=(1, 2, 3), default=None,
                      help="show this hint again: 1 a question, 2 the key formula, 3 the shapes")
    train = actions.add_parser("train", parents=[folder], help="MnistCNN from your layers beside the reference")
    train.add_argument("--limit", type=_positive(int), default=10_000, metavar="N",
                       help="training images (default 10,000)")
    train.add_argument("--test-limit", type=_positive(int), default=None, metavar="N",
                       help="test images (default: all 10,000)")
    train.add_argument("--epochs", type=_positive(int), default=1)
    train.add_argument("--batch-size", type=_positive(int), default=64)
    train.add_argument("--model", choices=("MnistCNN", "MnistBNCNN"), default="MnistCNN",
                       help="MnistBNCNN also runs your dropout and batchnorm2d")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                       help="sgd runs your sgd_momentum instead of your adam")
    train.add_argument("--seed", type=int, default=0)


def _folder(args):
    from minicnn.exercises.workspace import DEFAULT_DIR

    return args.dir if args.dir is not None else DEFAULT_DIR


def _dir_option(args) -> str:
    return "" if args.dir is None else f" --dir {args.dir}"


def _next_step(folder, dir_option: str) -> str:
    from minicnn.exercises import workspace
    from minicnn.exercises.catalog import EXERCISES

    for name, exercise in EXERCISES.items():
        state = workspace.status(exercise, folder)
        if state == "-":
            return f"minicnn exercise start {name}{dir_option}"
        if state != "done":
            return f"minicnn exercise check {name}{dir_option}"
    return f"minicnn exercise train{dir_option} (every exercise is done)"


def run_list(args, parser) -> int:
    from minicnn.exercises import workspace
    from minicnn.exercises.catalog import EXERCISES

    folder = _folder(args)
    states = {name: workspace.status(exercise, folder) for name, exercise in EXERCISES.items()}
    done = sum(state == "done" for state in states.values())
    print(f"The exercises, in the suggested order (workspace {folder}: {done} of {len(EXERCISES)} done)")
    print(f"{'':>4}  {'exercise':<16} {'builds on':<16} {'status':<8} what you write")
    for number, (name, exercise) in enumerate(EXERCISES.items(), start=1):
        builds_on = ", ".join(exercise.builds_on) or "-"
        print(f"{number:>4}  {name:<16} {builds_on:<16} {states[name]:<8} {exercise.title}")
    print("status: done (its check passed), changed (edited since it passed), started (not passed yet), - (no file)")
    print(f"Next: {_next_step(folder, _dir_option(args))}")
    return 0


def run_start(args, parser) -> int:
    from minicnn.exercises import get, workspace
    from minicnn.exercises.catalog import EXERCISES

    exercise, folder = get(args.name), _folder(args)
    path = workspace.start(exercise, folder, force=args.force)
    functions = list(exercise.functions)
    print(f"Wrote {path}: {', '.join(functions)} {'raises' if len(functions) == 1 else 'raise'} NotImplementedError "
          f"until you write {'it' if len(functions) == 1 else 'them'}.")
    print(f"The math: {workspace.docs_reference(exercise)}")
    for needed in exercise.builds_on:
        if workspace.status(EXERCISES[needed], folder) != "done":
            print(f"It builds on {needed}, not done yet: minicnn exercise start {needed}{_dir_option(args)} "
                  f"(or, for now, the reference's, as the comment beside the import in {path.name} says)")
    print(f"Then: minicnn exercise check {exercise.name}{_dir_option(args)}")
    return 0


def run_check(args, parser) -> int:
    from minicnn.exercises import get, sandbox, workspace
    from minicnn.exercises.checking import Result, format_stage

    exercise, folder = get(args.name), _folder(args)
    path = workspace.file_of(folder, exercise.name)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; minicnn exercise start {exercise.name}{_dir_option(args)} writes it")
    print(f"Checking {exercise.name} ({path})", flush=True)
    result = Result(exercise)

    def say(stage):
        result.stages.append(stage)
        print(format_stage(stage), flush=True)

    time_limit = args.time_limit if args.time_limit is not None else sandbox.TIME_LIMIT
    checked = workspace.fingerprint(exercise, folder)  # before the child reads the files: what a pass is for
    passed = sandbox.check_in_child(exercise.name, folder, args.examples, time_limit, say)
    print(result.lines()[-1])
    if passed:
        workspace.record_pass(exercise, folder, checked)
        print(f"Next: {_next_step(folder, _dir_option(args))}")
    return 0 if passed else 1


def run_hint(args, parser) -> int:
    from minicnn.exercises import get, workspace

    exercise, folder = get(args.name), _folder(args)
    tier = workspace.next_hint(exercise, folder, args.tier)
    print(f"Hint {tier} of {len(exercise.hints)} for {exercise.name} ({TIERS[tier - 1]}):")
    print(textwrap.fill(exercise.hints[tier - 1], width=100, initial_indent="  ", subsequent_indent="  "))
    print(f"The math: {workspace.docs_reference(exercise)}")
    if tier < len(exercise.hints):  # after --tier, the plain command may go on from a later tier seen before
        tier_option = "" if args.tier is None else f" --tier {tier + 1}"
        print(f"The next hint: minicnn exercise hint {exercise.name}{_dir_option(args)}{tier_option}")
    return 0


def run_train(args, parser) -> int:
    from minicnn.exercises.finale import train

    result = train(_folder(args), args.model, args.optimizer, args.limit, args.test_limit, args.epochs,
                   args.batch_size, args.seed)
    return 0 if result["reached"] else 1


ACTIONS = {"list": run_list, "start": run_start, "check": run_check, "hint": run_hint, "train": run_train}


def run(args, parser: argparse.ArgumentParser) -> int:
    return ACTIONS[args.action](args, parser)
