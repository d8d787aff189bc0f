"""The `kit` command. Each subcommand is a module in `kit/commands/` with
`add_arguments(parser)` and `run(args) -> int`; its docstring's first line is its help."""
from __future__ import annotations

import argparse
import importlib
import sys

from kit.core.errors import KitError

#: subcommand name -> module in kit.commands
COMMANDS = {
    "demo": "demo",
    "compress": "compress",
    "eval": "eval",
    "inspect": "inspect",
    "profile": "profile",
    "edgetpu": "edgetpu",
    "firmware": "firmware",
    "emulate": "emulate",
    "sensitivity": "sensitivity",
    "farm": "farm",
    "run": "run",
    "results": "results",
    "report": "report",
    "export": "export",
    "board": "board",
}


def build_parser(commands: dict[str, str] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kit", description="prune, quantize, convert, check and deploy models")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in commands.items():
        try:
            module = importlib.import_module(f"kit.commands.{module_name}")
        except ModuleNotFoundError as e:
            if e.name == f"kit.commands.{module_name}":
                continue  # command not built in this installation
            raise
        doc = (module.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=(module.__doc__ or "").strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KitError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
