"""The `kit` command. Each subcommand is a module in `kit/commands/` with
`add_arguments(parser)` and `run(args) -> int`; its docstring's first line is its help."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import threading

from kit.core.errors import KitError

#: lines that TensorFlow, absl, CUDA probing and the LiteRT/XNNPACK C++ runtimes write straight to file
#: descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says; hidden unless `-v`
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.-]+:\d+\] "    # absl / glog: I0000 00:00:17.1  42 file.cc:31]
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|(INFO|WARNING): \[[\w.-]+:\d+\] "                         # LiteRT: INFO: [environment.cc:36] …
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|INFO: Initialized TensorFlow Lite runtime\."
    r")")

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
        p.add_argument("-v", "--verbose", action="store_true",
                       help="show TensorFlow's, absl's and the runtimes' own log lines (hidden by default)")
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    quiet = None
    if args.verbose:
        for name in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL", "GLOG_minloglevel"):
            os.environ[name] = "0"  # read when TensorFlow is imported, which no command has done yet
    else:
        quiet = QuietStderr().start()
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
    finally:
        if quiet is not None:
            quiet.stop()


class QuietStderr:
    """Drop TensorFlow/absl/CUDA/LiteRT log lines written to file descriptor 2; pass everything else on.

    Those lines come from C++ code (and child processes) writing to the descriptor itself, so setting log
    levels cannot stop them all: descriptor 2 becomes a pipe read by a thread that forwards every other
    line to the real stderr. Python's `sys.stderr` keeps writing to the real one directly, so it still
    knows whether it is a terminal (progress bars) and nothing printed by the kit waits in the pipe.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def start(self) -> QuietStderr:
        import logging
        import warnings

        for name in ("tensorflow", "absl", "h5py"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"(tensorflow|tf_keras|keras|absl)(\.|$)")
        try:
            sys.stderr.flush()
            self._real = os.dup(2)
            read_end, write_end = os.pipe()
        except (OSError, ValueError, AttributeError):
            return self  # no descriptor 2 to filter (embedded or closed stderr)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._saved_stderr = None
        if _writes_to_descriptor_2(sys.stderr):  # not when a caller (a test, a notebook) captures sys.stderr
            self._saved_stderr = sys.stderr
            sys.stderr = open(os.dup(self._real), "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                              errors="replace", closefd=True)  # closed in stop()
        self._thread = threading.Thread(target=self._forward, args=(read_end,), name="quiet-stderr", daemon=True)
        self._thread.start()
        return self

    def _forward(self, read_end: int) -> None:
        with open(read_end, "rb", closefd=True) as pipe:
            for line in pipe:
                if not NOISE.match(line.decode("utf-8", "replace")):
                    os.write(self._real, line)

    def stop(self) -> None:
        if self._thread is None:
            return
        sys.stderr.flush()
        os.dup2(self._real, 2)  # closes the pipe's write end: the reader sees EOF once children let go
        self._thread.join(timeout=2)
        if self._saved_stderr is not None:
            sys.stderr.close()
            sys.stderr = self._saved_stderr
        self._thread = None


def _writes_to_descriptor_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
