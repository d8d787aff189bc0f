"""Bad input against the real CLI and runtimes: a generated matrix plus fuzz; counts per outcome.

Sections (each case has a time limit; nothing is mocked):
- cli: bad models (in every command that loads one: inspect, eval, emulate,
  profile, firmware, edgetpu), recipes, data and labels (eval, compress,
  sensitivity), run settings, target URIs and options (every target), outputs,
  results stores (damaged, empty, killed mid-run), farm and pipeline files whose
  names would become paths, and hostile serial boards (malformed answers,
  endless lines, silence at the default timeouts, resets), each run as a real
  `python -m kit …` subprocess. Outcomes: ok (exit 0 where 0 is right), clear
  error (exit 1/2 with an `error:` line and no traceback), traceback, crash (the
  kit process killed by a signal), hang (still running at the time limit),
  silent (exit 0 on input that must be refused, or a false figure: a file
  written outside its folder, a store changed by a read-only command, JSON with
  NaN, injected C, a "within N s" the command did not wait).
- reader: mutated .tflite files (one-byte flips, 4-byte integer fields set to
  extremes, truncations) through `kit.core.tflite_file.read_tflite`, in a
  worker process so that a crash is counted, not fatal.
- runtime: the mutants the reader accepts, loaded (and invoked once) in TFLM
  and LiteRT, each load in a forked child of a worker: ok, refused (a runtime
  error), crash (signal) or hang. The runtimes themselves are expected to
  crash on some; what matters is the next section.
- kit-runtime: every mutant that crashed or hung a runtime (plus a sample of
  the others) through the kit's own isolated path (`kit.convert.check.load_error`,
  called in this process): each must be a clear error or ok, and this process
  must survive.

    .venv/bin/python benchmarks/bench_robustness.py [--reader 1000] [--runtime 1000] [--seed 0] [--jobs 2]

Needs ../shared/models (the MLPerf Tiny and TFLite Micro example models).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("PRUNEKIT_SHARED", ROOT.parent / "shared"))
KWS = SHARED / "models/mlperf-tiny/kws_ref_model.tflite"
HELLO = SHARED / "models/tflm-examples/hello_world_int8.tflite"
AD01 = SHARED / "models/mlperf-tiny/ad01_int8.tflite"
OUTCOMES = ("ok", "clear error", "traceback", "crash", "hang", "silent")
KIT = [sys.executable, "-m", "kit"]
#: boards profiled at the default line timeout and --timeout: the kit must give up within seconds
INJECTING_NAME = "m\n#error injected\n.tflite"  # a model file name that would be C source
QUIET_BOARDS = ("goes silent on infer", "goes silent on profile", "streams 1,000 bytes/s without a line break")


@dataclass
class Case:
    section: str
    name: str
    argv: list[str] = field(default_factory=list)
    expect: str = "error"  # "error": must be refused; "ok": must succeed; "any": either is right
    timeout: float = 120.0
    #: after the command: a problem (a file written outside its folder, a store changed, invalid JSON, a
    #: figure that is not true), or None; a problem makes the outcome "silent"
    check: Callable[[], str | None] | None = None
    #: runs the case itself instead of one `kit` command (e.g. kill a run, then resume it)
    custom: Callable[[Case, Path], Outcome] | None = None


@dataclass
class Outcome:
    case: Case
    outcome: str
    seconds: float
    detail: str


# ---- the CLI matrix -------------------------------------------------------------------------------------------


def _mutate(data: bytes, offset: int, byte: int) -> bytes:
    out = bytearray(data)
    out[offset] = byte
    return bytes(out)


def build_inputs(work: Path) -> dict[str, Path]:
    """Files the matrix points at: good and bad models, recipes, data sets, a run folder."""
    import numpy as np

    f: dict[str, Path] = {}
    kws = KWS.read_bytes()

    def put(name: str, data: bytes | str) -> Path:
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        f[name] = p
        return p

    put("kws.tflite", kws)
    put("hello.tflite", HELLO.read_bytes())
    put("empty.tflite", b"")
    put("text.tflite", "not a model\n")
    put("truncated.tflite", kws[: len(kws) // 2])
    put("header-only.tflite", kws[:64])
    put("tflm-sigfpe.tflite", _mutate(kws, 27716, 16))      # TFLM divides by zero preparing it
    put("tflm-segv.tflite", _mutate(kws, 25880, 164))       # an operator input index out of range
    put("huge-dims.tflite", _mutate(kws, 31703, 38))        # a tensor claiming 2.6e12 elements
    put("litert-refuses.tflite", _mutate(kws, 52458, 30))
    put("-h.tflite", HELLO.read_bytes())
    put("new\nline.tflite", HELLO.read_bytes())
    (work / "folder.tflite").mkdir(exist_ok=True)
    f["folder.tflite"] = work / "folder.tflite"
    put("model.h5", "not hdf5")
    put("model.keras", b"PK\x03\x04garbage")

    recipes = {
        "unknown-key": "[prune]\nfinal_sparsty = 0.5\n",
        "non-utf8": b"[prune]\nfinal_sparsity = 0.5 # \xff\xfe\n",
        "not-toml": "[prune\nfinal_sparsity = \n",
        "seed-too-big": "seed = 4294967296\n[prune]\nfinal_sparsity = 0.5\n",
        "huge-block": '[prune]\nfinal_sparsity = 0.5\ngranularity = "block"\nblock = "100000x100000"\n',
        "empty-mode": "[quantize]\nmode = []\n",
        "sparsity-2": "[prune]\nfinal_sparsity = 2.0\n",
        "negative-epochs": "[finetune]\nepochs = -3\n",
        "nan-lr": "[finetune]\nlearning_rate = nan\n",
        "bad-type": '[prune]\nfinal_sparsity = "lots"\n',
        "bad-target": '[convert]\ntargets = ["gpu"]\n',
    }
    for name, text in recipes.items():
        put(f"recipes/{name}.toml", text)

    rng = np.random.default_rng(0)
    x = rng.random((40, 49, 10, 1), dtype=np.float32)
    y = rng.integers(0, 12, 40)

    def npz(name: str, **arrays) -> None:
        p = work / f"data/{name}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez(p, **arrays)
        f[f"data/{name}.npz"] = p

    npz("good", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    npz("missing-keys", x_train=x, y_train=y)
    npz("string-labels", x_train=x, y_train=y.astype(str), x_test=x[:20], y_test=y[:20].astype(str))
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    nan[1, 0, 0, 0] = np.inf
    npz("nan-inputs", x_train=nan, y_train=y, x_test=nan[:20], y_test=y[:20])
    npz("labels-beyond-classes", x_train=x, y_train=y + 50, x_test=x[:20], y_test=y[:20] + 50)
    npz("wrong-shape", x_train=rng.random((40, 7, 3), dtype=np.float32), y_train=y,
        x_test=rng.random((20, 7, 3), dtype=np.float32), y_test=y[:20])
    npz("length-mismatch", x_train=x, y_train=y, x_test=x[:20], y_test=y[:5])
    npz("empty", x_train=x[:0], y_train=y[:0], x_test=x[:0], y_test=y[:0])
    obj = np.empty(20, dtype=object)
    obj[:] = [{"a": 1}] * 20
    np.savez(work / "data/pickled.npz", x_train=x, y_train=y, x_test=obj, y_test=y[:20])
    f["data/pickled.npz"] = work / "data/pickled.npz"
    put("data/not-npz.npz", "hello")

    npz("one-output", x_train=rng.random((40, 1), dtype=np.float32), y_train=rng.integers(0, 10, 40),
        x_test=rng.random((20, 1), dtype=np.float32), y_test=rng.integers(0, 10, 20))
    digits_x = rng.random((60, 28, 28), dtype=np.float32)
    digits_y = rng.integers(0, 10, 60)
    bad_x = digits_x.copy()
    bad_x[3, 1, 1] = np.nan
    npz("digits-nan", x_train=bad_x, y_train=digits_y, x_test=bad_x[:20], y_test=digits_y[:20])
    cifar_x = rng.random((30, 32, 32, 3), dtype=np.float32)  # pretrainedResnet.h5: a 10-class CIFAR model
    npz("cifar-labels-99", x_train=cifar_x, y_train=rng.integers(0, 100, 30), x_test=cifar_x[:10],
        y_test=rng.integers(90, 100, 10))
    npz("digits-string-labels", x_train=digits_x, y_train=digits_y.astype(str), x_test=digits_x[:20],
        y_test=digits_y[:20].astype(str))
    put("inputs/garbage.npy", "not numpy")
    np.save(work / "inputs/wrong-shape.npy", np.zeros((3, 7), np.float32))
    f["inputs/wrong-shape.npy"] = work / "inputs/wrong-shape.npy"
    put(INJECTING_NAME, KWS.read_bytes())  # a file name that would be C source
    put("recipes-ok/tiny.toml", 'name = "tiny"\n[prune]\nfinal_sparsity = 0.5\n[finetune]\nepochs = 1\n'
        '[quantize]\nmode = ["int8"]\n')

    import zipfile

    p = work / "metadata-list.keras"
    with zipfile.ZipFile(p, "w") as z:  # a .keras archive whose metadata.json is not an object
        z.writestr("metadata.json", "[1, 2, 3]")
        z.writestr("config.json", '{"class_name": "Sequential", "config": {}}')
        z.writestr("model.weights.h5", b"")
    f["metadata-list.keras"] = p

    put("exists.txt", "another tool's file\n")
    put("busy/report.md", "another tool's report\n")
    return f


def make_run(work: Path) -> Path | None:
    """A real farm run (one local device) to damage; None when `kit run` fails here."""
    d = work / "farm"
    d.mkdir(exist_ok=True)
    (d / "farm.toml").write_text('[farm]\nname = "bench"\n\n[[device]]\nname = "host-0"\nuri = "local"\n'
                                 'profile = "host"\nclass = "host"\n')
    (d / "pipeline.toml").write_text(f'name = "bench-run"\nfarm = "farm.toml"\nout = "run"\n\n[[artifact]]\n'
                                     f'path = "{HELLO}"\n\n[settings]\nruns = 3\nwarmup = 1\ntimeout_s = 60\n')
    proc = subprocess.run([*KIT, "run", "pipeline.toml"], cwd=d, capture_output=True, text=True, timeout=300,
                          check=False)
    if proc.returncode != 0:
        print(f"kit run failed; the results-store cases are left out:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    con = sqlite3.connect(d / "run/results.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    return d / "run"


def damaged_runs(pristine: Path, work: Path) -> dict[str, Path]:
    """Copies of the run with the store missing, empty, not SQLite, with a damaged page, a bad version or row."""
    out = {}

    def copy(name: str) -> Path:
        d = Path(shutil.copytree(pristine, work / f"runs/{name}"))
        plan = json.loads((d / "run.json").read_text())
        plan["store"] = str(d / "results.db")
        (d / "run.json").write_text(json.dumps(plan))
        out[name] = d
        return d

    copy("intact")
    (copy("missing") / "results.db").unlink()
    (copy("zero-bytes") / "results.db").write_bytes(b"")
    (copy("not-sqlite") / "results.db").write_text("id,latency\n")
    db = copy("damaged-page") / "results.db"
    con = sqlite3.connect(db)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'measurements'").fetchone()[0]
    con.close()
    data = bytearray(db.read_bytes())
    data[(root - 1) * page:(root - 1) * page + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    for name, sql in (("schema-one", "UPDATE meta SET value = 'one' WHERE key = 'schema_version'"),
                      ("text-latency", "UPDATE measurements SET latency_median_us = 'fast'"),
                      ("infinite-latency", "UPDATE measurements SET latency_mean_us = 9e999"),
                      ("blob-memory", "UPDATE measurements SET peak_memory_bytes = x'00ff'")):
        con = sqlite3.connect(copy(name) / "results.db")
        con.execute(sql)
        con.commit()
        con.close()
    (copy("no-run-json") / "run.json").unlink()
    (copy("run-json-garbage") / "run.json").write_text("{not json")
    return out


def cli_cases(f: dict[str, Path], runs: dict[str, Path], work: Path, serial_urls: dict[str, str]) -> list[Case]:
    c: list[Case] = []
    bad_models = ["empty.tflite", "text.tflite", "truncated.tflite", "header-only.tflite", "huge-dims.tflite",
                  "folder.tflite", "tflm-segv.tflite"]
    for m in [*bad_models, "missing.tflite"]:
        path = str(f.get(m, work / m))
        c.append(Case("model", f"inspect {m}", ["inspect", path]))
        c.append(Case("model", f"eval {m}", ["eval", path, "--data", str(f["data/good.npz"])]))
        c.append(Case("model", f"emulate {m}", ["emulate", path, "--pty"], timeout=60))
    c += [
        Case("model", "eval tflm-sigfpe (TFLM crashes; LiteRT runs it)",
             ["eval", str(f["tflm-sigfpe.tflite"]), "--data", str(f["data/good.npz"])], expect="any"),
        Case("model", "eval tflm-sigfpe on tflm only",
             ["eval", str(f["tflm-sigfpe.tflite"]), "--data", str(f["data/good.npz"]), "--runtime", "tflm"]),
        Case("model", "emulate tflm-sigfpe", ["emulate", str(f["tflm-sigfpe.tflite"]), "--pty"], timeout=60),
        Case("model", "edgetpu litert-refuses", ["edgetpu", str(f["litert-refuses.tflite"]), "--no-compile"]),
        Case("model", "edgetpu float model (0 ops map)",
             ["edgetpu", str(SHARED / "models/mlperf-tiny/ad01_fp32.tflite"), "--no-compile"]),
        Case("model", "edgetpu int8 model", ["edgetpu", str(AD01), "--no-compile"], expect="ok"),
        Case("model", "firmware huge-dims", ["firmware", str(f["huge-dims.tflite"]), "-o", str(work / "fw1")]),
        Case("model", "inspect -h.tflite", ["inspect", "--", str(f["-h.tflite"])], expect="ok"),
        Case("model", "inspect kws (intact)", ["inspect", str(f["kws.tflite"])], expect="ok"),
        Case("model", "eval kws (intact)", ["eval", str(f["kws.tflite"]), "--data", str(f["data/good.npz"])],
             expect="ok"),
        Case("model", "compress h5 that is not HDF5",
             ["compress", str(f["model.h5"]), "--data", "digits", "-o", str(work / "c-h5")]),
        Case("model", "compress keras that is not a zip",
             ["compress", str(f["model.keras"]), "--data", "digits", "-o", str(work / "c-keras")]),
        Case("model", "eval unknown runtime",
             ["eval", str(f["kws.tflite"]), "--data", str(f["data/good.npz"]), "--runtime", "gpu"]),
    ]
    for name in sorted(p.stem for p in (work / "recipes").glob("*.toml")):
        c.append(Case("recipe", f"compress --recipe {name}",
                      ["compress", "lenet-300-100", "--recipe", str(work / f"recipes/{name}.toml"), "--data",
                       "digits", "-o", str(work / f"c-{name}")], timeout=240))
    c.append(Case("recipe", "compress --recipe missing.toml",
                  ["compress", "lenet-300-100", "--recipe", str(work / "nope.toml"), "--data", "digits", "-o",
                   str(work / "c-missing")]))
    for name in ("missing-keys", "string-labels", "nan-inputs", "labels-beyond-classes", "wrong-shape",
                 "length-mismatch", "empty", "pickled", "not-npz"):
        c.append(Case("data", f"eval --data {name}",
                      ["eval", str(f["kws.tflite"]), "--data", str(f[f"data/{name}.npz"]), "--runtime", "litert"]))
    c += [
        Case("data", "eval --data missing.npz", ["eval", str(f["kws.tflite"]), "--data", str(work / "none.npz")]),
        Case("data", "eval --data unknown-name", ["eval", str(f["kws.tflite"]), "--data", "imagenet"]),
        Case("data", "eval --samples -5",
             ["eval", str(f["kws.tflite"]), "--data", str(f["data/good.npz"]), "--samples", "-5"]),
        Case("data", "eval --samples 0",
             ["eval", str(f["kws.tflite"]), "--data", str(f["data/good.npz"]), "--samples", "0"]),
    ]
    hello = str(f["hello.tflite"])
    for uri in ("bogus://x", "ssh://", "serial:///dev/does-not-exist", "adb://", "local?foo=bar",
                "socket://127.0.0.1:1", "serial:///dev/null?baud=-5", "edgetpu+nothing://x", ""):
        c.append(Case("uri", f"profile --target {uri!r}", ["profile", hello, "--target", uri], timeout=90))
    for opt in ("foo=bar", "runs", "=1"):
        c.append(Case("uri", f"profile local --option {opt}",
                      ["profile", hello, "--target", "local", "--option", opt], timeout=90))
    c += [
        Case("output", "firmware -o an existing file", ["firmware", hello, "-o", str(f["exists.txt"])]),
        Case("output", "firmware -o under /proc", ["firmware", hello, "-o", "/proc/kit-out"]),
        Case("output", "firmware --baud -5", ["firmware", hello, "-o", str(work / "fw-baud"), "--baud", "-5"]),
        Case("output", "profile --json into a missing folder (made)",
             ["profile", hello, "--target", "local", "--json", str(work / "no/such/dir/r.json")], expect="ok",
             timeout=90, check=_strict_json_under(work / "no/such/dir")),
        Case("output", "profile --json onto a folder",
             ["profile", hello, "--target", "local", "--json", str(work)], timeout=90),
        Case("output", "compress -o an existing file",
             ["compress", "lenet-300-100", "--data", "digits", "-o", str(f["exists.txt"])], timeout=240),
        Case("output", "compress -o a folder of another tool",
             ["compress", "lenet-300-100", "--data", "digits", "-o", str(work / "busy")], timeout=240),
        Case("output", "results --csv under /proc", ["results", str(runs.get("intact", work)), "--csv",
                                                      "/proc/kit.csv"]),
        Case("output", "results --csv onto a folder", ["results", str(runs.get("intact", work)), "--csv",
                                                        str(work)]),
        Case("output", "report -o under /proc", ["report", str(runs.get("intact", work)), "-o", "/proc/r.html"]),
        Case("output", "report -o onto a folder", ["report", str(runs.get("intact", work)), "-o", str(work)]),
        Case("output", "export --android under /proc", ["export", str(runs.get("intact", work)), "--android",
                                                         "/proc/kit-assets"]),
    ]
    for name, d in sorted(runs.items()):
        expect = "ok" if name == "intact" else "error"
        c.append(Case("store", f"results {name}", ["results", str(d)], expect=expect))
        c.append(Case("store", f"report {name}", ["report", str(d), "-o", str(work / f"report-{name}.html")],
                      expect=expect))
        c.append(Case("store", f"export {name}", ["export", str(d), "--android", str(work / f"exp-{name}")],
                      expect="any" if name == "intact" else "error"))
    c.append(Case("store", "results of a folder that is not a run", ["results", str(work / "data")]))
    for name, url in serial_urls.items():
        if name == "answers like the reference firmware" or name in QUIET_BOARDS:
            continue  # the first only for option cases; the quiet ones at default timeouts below
        c.append(Case("serial", f"profile a board that {name}",
                      ["profile", str(f["kws.tflite"]), "--target", url, "--option", "line_timeout=0.5"],
                      timeout=120))
    c += more_cases(f, runs, work, serial_urls)
    return c


def _no_such(*paths: Path) -> Callable[[], str | None]:
    """A check: none of `paths` may exist after the command (something written outside its folder)."""
    def check() -> str | None:
        made = [str(p) for p in paths if p.exists() or p.is_symlink()]
        return f"wrote outside its folder: {', '.join(made)}" if made else None
    return check


def _strict_json_under(folder: Path) -> Callable[[], str | None]:
    """A check: every .json file the command wrote under `folder` is strict JSON (no NaN/Infinity)."""
    def check() -> str | None:
        def refuse(token: str):
            raise ValueError(f"{token} is not JSON")
        files = sorted(folder.rglob("*.json")) if folder.is_dir() else []
        for p in files:
            try:
                json.loads(p.read_text(), parse_constant=refuse)
            except ValueError as e:
                return f"{p.relative_to(folder)} is not strict JSON: {e}"
        return None if files else f"no .json file was written under {folder}"
    return check


def _unchanged(path: Path) -> Callable[[], str | None]:
    """A check: `path` (a results store) is byte-for-byte as before, or still absent (read-only commands)."""
    before = path.read_bytes() if path.exists() else None

    def check() -> str | None:
        after = path.read_bytes() if path.exists() else None
        if after == before:
            return None
        return f"a read-only command {'created' if before is None else 'changed'} {path}"
    return check


def _no_injected_c(folder: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        sources = [p for p in folder.rglob("*") if p.suffix in (".h", ".c", ".cc", ".cpp")]
        if not sources:
            return f"no C source under {folder}"
        for p in sources:
            if any(ln.lstrip().startswith("#error") for ln in p.read_text(errors="replace").splitlines()):
                return f"{p.relative_to(folder)} holds an injected line"
        return None
    return check


def farm_dirs(work: Path, f: dict[str, Path]) -> dict[str, Path]:
    """Pipelines whose names from farm files and recipes would write outside the run or export folder."""
    out = {}
    host = '[[device]]\nname = "{name}"\nuri = "local"\nprofile = "host"\nclass = "{cls}"\n'
    artifact = f'[[artifact]]\npath = "{f["hello.tflite"]}"\n'
    settings = '[settings]\nruns = 3\nwarmup = 1\ntimeout_s = 60\n'

    def farm(name: str, farm_text: str, pipeline: str) -> None:
        d = work / "farms" / name / "in"
        d.mkdir(parents=True)
        (d / "farm.toml").write_text('[farm]\nname = "f"\n\n' + farm_text)
        (d / "pipeline.toml").write_text(pipeline)
        out[name] = d

    def recipe(d: Path, file: str, name: str) -> None:
        (d / file).write_text(f'name = "{name}"\n[prune]\nfinal_sparsity = 0.5\n[finetune]\nepochs = 1\n')

    base = 'name = "p"\nfarm = "farm.toml"\nout = "run"\n'
    export = '[export]\nandroid = "assets"\n'
    farm("class-escapes", host.format(name="h0", cls="../../../escaped-class"), base + artifact + settings + export)
    farm("class-absolute", host.format(name="h0", cls=str(work.parent / f"escaped-abs-{os.getpid()}")),
         base + artifact + settings + export)
    farm("class-case-clash", host.format(name="h0", cls="Phone") + "\n"
         + host.format(name="h1", cls="phone").replace('uri = "local"', 'uri = "ssh://u@10.0.0.9"'),
         base + artifact + settings + export)
    farm("device-name-escapes", host.format(name="../../escaped-device", cls="host"), base + artifact + settings)
    farm("run-name-escapes", host.format(name="h0", cls="host"),
         'name = "../../escaped-run"\nfarm = "farm.toml"\n' + artifact + settings)
    model = '[model]\npath = "lenet-300-100"\ndata = "digits"\nrecipes = [{}]\nteacher_epochs = 1\n'
    farm("recipe-name-escapes", host.format(name="h0", cls="host"), base + model.format('"evil.toml"') + settings)
    recipe(out["recipe-name-escapes"], "evil.toml", "../../../escaped-recipe")
    farm("two-recipes-one-name", host.format(name="h0", cls="host"),
         base + model.format('"a.toml", "b.toml"') + settings)
    recipe(out["two-recipes-one-name"], "a.toml", "small")
    recipe(out["two-recipes-one-name"], "b.toml", "small")
    farm("export-under-proc", host.format(name="h0", cls="host"),
         base + artifact + settings + '[export]\nandroid = "/proc/kit-assets"\n')
    farm("artifact-huge-dims", host.format(name="h0", cls="host"),
         base + f'[[artifact]]\npath = "{f["huge-dims.tflite"]}"\n' + settings)
    farm("artifact-tflm-segv", host.format(name="h0", cls="host"),
         base + f'[[artifact]]\npath = "{f["tflm-segv.tflite"]}"\n' + settings)
    farm("negative-timeout", host.format(name="h0", cls="host"),
         base + artifact + '[settings]\ntimeout_s = -1\n')
    return out


def more_cases(f: dict[str, Path], runs: dict[str, Path], work: Path, serial_urls: dict[str, str]) -> list[Case]:
    """Every category of the bad-input list beyond the first matrix: farms, outputs, options, data, runtimes."""
    c: list[Case] = []
    kws, hello, good = str(f["kws.tflite"]), str(f["hello.tflite"]), str(f["data/good.npz"])
    # runtimes that crash or spin, in every command that loads a model
    for m in ("tflm-segv.tflite", "huge-dims.tflite", "empty.tflite", "litert-refuses.tflite"):
        c.append(Case("model", f"profile local {m}", ["profile", str(f[m]), "--target", "local", "--runs", "3"],
                      timeout=90))
        c.append(Case("model", f"edgetpu {m}", ["edgetpu", str(f[m]), "--no-compile"]))
    c.append(Case("model", "profile local tflm-sigfpe (LiteRT runs it)",
                  ["profile", str(f["tflm-sigfpe.tflite"]), "--target", "local", "--runs", "3"], expect="any",
                  timeout=90))
    for m in ("tflm-sigfpe.tflite", "tflm-segv.tflite", "empty.tflite", "truncated.tflite"):
        c.append(Case("model", f"firmware {m}", ["firmware", str(f[m]), "-o", str(work / f"fw-{m}")]))
    c.append(Case("model", "firmware litert-refuses (TFLM runs it)",
                  ["firmware", str(f["litert-refuses.tflite"]), "-o", str(work / "fw-litert")], expect="any"))
    c += [
        Case("model", "firmware of a float model",
             ["firmware", str(SHARED / "models/mlperf-tiny/kws_ref_model_float32.tflite"), "-o", str(work / "fw-f")]),
        Case("model", "firmware of a model file named with a newline and #error",
             ["firmware", str(f[INJECTING_NAME]), "-o", str(work / "fw-newline")], expect="ok",
             check=_no_injected_c(work / "fw-newline")),
        Case("model", "eval a 1-output model on 10-class labels",
             ["eval", hello, "--data", str(f["data/one-output.npz"])]),
        Case("model", "eval --reference that is not a model",
             ["eval", kws, "--data", good, "--reference", str(f["model.h5"])]),
        Case("model", "compress .keras whose metadata is a list",
             ["compress", str(f["metadata-list.keras"]), "--data", "digits", "-o", str(work / "c-meta")]),
        Case("model", "emulate --arena-bytes -5", ["emulate", kws, "--pty", "--arena-bytes", "-5"], timeout=60),
        Case("model", "emulate --flash-bytes 0", ["emulate", kws, "--pty", "--flash-bytes", "0"], timeout=60),
        Case("model", "inspect ./-h.tflite", ["inspect", "./-h.tflite"], expect="ok"),
        Case("model", "inspect -h.tflite (read as an option)", ["inspect", "-h.tflite"], expect="any"),
        Case("model", "inspect --json kws", ["inspect", "--json", kws], expect="ok"),
    ]
    # data and labels, shared by eval and compress
    resnet = str(SHARED / "models/mlperf-tiny/pretrainedResnet.h5")
    for model, name in (("lenet-300-100", "digits-nan"), ("lenet-300-100", "digits-string-labels"),
                        (resnet, "cifar-labels-99")):
        c.append(Case("data", f"compress {Path(model).name} --data {name}",
                      ["compress", model, "--data", str(f[f"data/{name}.npz"]), "-o", str(work / f"c-{name}")],
                      timeout=240))
        c.append(Case("data", f"sensitivity {Path(model).name} --data {name}",
                      ["sensitivity", model, "--data", str(f[f"data/{name}.npz"]), "-o", str(work / f"s-{name}")],
                      timeout=240))
    c += [
        Case("data", "compress --eval-samples -5",
             ["compress", "lenet-300-100", "--data", "digits", "--eval-samples", "-5", "-o", str(work / "c-es")]),
        Case("data", "compress --budget accuracy-drop=abc",
             ["compress", "lenet-300-100", "--data", "digits", "--budget", "accuracy-drop=abc", "-o",
              str(work / "c-budget")]),
        Case("data", "compress --val-fraction 2",
             ["compress", "lenet-300-100", "--data", "digits", "--val-fraction", "2", "--budget",
              "accuracy-drop=1", "-o", str(work / "c-vf")]),
        Case("data", "compress tiny recipe: manifest is strict JSON",
             ["compress", "lenet-300-100", "--data", "digits", "--recipe", str(f["recipes-ok/tiny.toml"]),
              "-o", str(work / "c-tiny")], expect="ok", timeout=400, check=_strict_json_under(work / "c-tiny")),
        Case("data", "profile --input garbage.npy", ["profile", hello, "--input", str(f["inputs/garbage.npy"])],
             timeout=90),
        Case("data", "profile --input of the wrong shape",
             ["profile", kws, "--input", str(f["inputs/wrong-shape.npy"])], timeout=90),
        Case("data", "demo --runs -5", ["demo", "--runs", "-5", "-o", str(work / "demo-runs")]),
    ]
    for flag, value in (("--runs", "-5"), ("--warmup", "-1"), ("--threads", "0"), ("--timeout", "0"),
                        ("--timeout", "nan"), ("--instances", "0"), ("--core-mask", "zz"), ("--delegate", "bogus"),
                        ("--profile", "no-such-profile")):
        c.append(Case("uri", f"profile local {flag} {value}", ["profile", hello, flag, value], timeout=90))
    # unknown target options, on every target
    board = serial_urls.get("answers like the reference firmware")
    for uri in ([board] if board else []) + ["ssh://nobody@127.0.0.1:1", "adb://emulator-5554",
                                            "edgetpu+local"]:
        c.append(Case("uri", f"profile {uri.split(':')[0]} --option foo=bar",
                      ["profile", hello, "--target", uri, "--option", "foo=bar"], timeout=90))
        c.append(Case("uri", f"profile {uri.split(':')[0]}?foo=bar",
                      ["profile", hello, "--target", uri + ("&" if "?" in uri else "?") + "foo=bar"], timeout=90))
    pwned = work / "pwned"
    c += [
        Case("uri", "profile ssh to a closed port", ["profile", hello, "--target", "ssh://nobody@127.0.0.1:1"],
             timeout=90),
        Case("uri", "profile ssh with an option as host",
             ["profile", hello, "--target", f"ssh://-oProxyCommand=touch%20{pwned}"], timeout=90,
             check=_no_such(pwned)),
        Case("uri", "profile serial line_timeout=0", ["profile", hello, "--target", "serial:///dev/null",
                                                      "--option", "line_timeout=0"], timeout=90),
    ]
    # outputs
    c += [
        Case("output", "firmware -o a folder of another tool", ["firmware", kws, "-o", str(work / "busy")]),
        Case("output", "edgetpu --json under /proc", ["edgetpu", str(AD01), "--no-compile", "--json",
                                                       "/proc/kit.json"]),
        Case("output", "export --firmware under /proc", ["export", str(runs.get("intact", work)), "--firmware",
                                                          "/proc/kit-fw"]),
        Case("output", "sensitivity -o under /proc", ["sensitivity", "lenet-300-100", "--data", "digits", "-o",
                                                       "/proc/kit-sens"]),
        Case("output", "sensitivity -o a folder of another tool",
             ["sensitivity", "lenet-300-100", "--data", "digits", "-o", str(work / "busy")]),
        Case("output", "demo -o a folder of another tool", ["demo", "--data", "digits", "-o", str(work / "busy")]),
        Case("output", "results --csv into a missing folder",
             ["results", str(runs.get("intact", work)), "--csv", str(work / "no/such/r.csv")], expect="any"),
        Case("output", "profile --json onto an existing file (overwritten)",
             ["profile", hello, "--runs", "3", "--json", str(work / "profile-again.json")], expect="ok",
             timeout=90),
    ]
    (work / "profile-again.json").write_text("[]")
    # results stores: read-only commands never create or change one
    for name in ("zero-bytes", "missing", "damaged-page", "intact"):
        if name in runs:
            db = runs[name] / "results.db"
            c.append(Case("store", f"results {name} leaves the store as it was", ["results", str(runs[name])],
                          expect="ok" if name == "intact" else "error", check=_unchanged(db)))
    if "intact" in runs and "damaged-page" in runs:
        c.append(Case("store", "results --compare a damaged run",
                      ["results", str(runs["intact"]), "--compare", str(runs["damaged-page"])]))
        c.append(Case("store", "results --compare a folder that is not a run",
                      ["results", str(runs["intact"]), "--compare", str(work / "data")]))
    # farms and pipelines: names that become paths, collisions
    escapes = [work.parent / n for n in ("escaped-class", "escaped-class.tflite", "escaped-device", "escaped-run",
                                         "escaped-recipe", f"escaped-abs-{os.getpid()}",
                                         f"escaped-abs-{os.getpid()}.tflite")]
    escapes += [work / n for n in ("escaped-class", "escaped-class.tflite", "escaped-device", "escaped-recipe",
                                   "escaped-run")]
    for name, d in farm_dirs(work, f).items():
        expect = "any" if name.startswith("artifact-") else "error"
        c.append(Case("farm", f"run {name}", ["run", str(d / "pipeline.toml"), "--quiet"], expect=expect,
                      timeout=300, check=_no_such(*escapes)))
        c.append(Case("farm", f"farm check {name}", ["farm", "check", "--farm", str(d / "farm.toml")],
                      expect="any" if not name.startswith(("class-", "device-")) else "error", timeout=90,
                      check=_no_such(*escapes)))
    c.append(Case("farm", "a run killed with SIGKILL is marked interrupted on resume", custom=killed_run))
    # a board that goes quiet: at the default line timeout and --timeout (600 s) the kit must give up
    # within seconds, not wait timeout_s per attempt
    for name in QUIET_BOARDS:
        if name in serial_urls:
            c.append(Case("serial", f"profile a board that {name} (default timeouts)",
                          ["profile", kws, "--target", serial_urls[name], "--runs", "3"], timeout=120))
    return c


def killed_run(case: Case, work: Path) -> Outcome:
    """`kit run`, SIGKILL while it measures, `kit results` (must not change the store), `kit run` again:
    the killed invocation must end up `interrupted`, none `running`."""
    t0 = time.monotonic()
    d = work / "farms/killed"
    d.mkdir(parents=True)
    (d / "farm.toml").write_text('[farm]\nname = "k"\n\n[[device]]\nname = "h0"\nuri = "local"\n'
                                 'profile = "host"\nclass = "host"\n')
    arts = "".join(f'[[artifact]]\npath = "{p}"\n' for p in (HELLO, KWS, AD01))
    (d / "pipeline.toml").write_text(f'name = "killed"\nfarm = "farm.toml"\nout = "run"\n{arts}'
                                     '[settings]\nruns = 20000\nwarmup = 1\ntimeout_s = 120\n')
    db = d / "run/results.db"

    def invocations() -> list[str]:
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                return [r[0] for r in con.execute("SELECT status FROM invocations ORDER BY started")]
            finally:
                con.close()
        except sqlite3.Error:
            return []

    proc = subprocess.Popen([*KIT, "run", "pipeline.toml", "--quiet"], cwd=d, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and "running" not in invocations():
        time.sleep(0.2)
    time.sleep(1.0)
    if proc.poll() is not None:
        return Outcome(case, "clear error" if proc.returncode else "ok", time.monotonic() - t0,
                       f"inconclusive: kit run ended (exit {proc.returncode}) before it could be killed")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if invocations() != ["running"]:
        return Outcome(case, "ok", time.monotonic() - t0, f"inconclusive: invocations {invocations()}")
    sub = Case("farm", "results of the killed run", ["results", "run"], expect="any", check=_unchanged(db))
    r = run_case(sub, d)
    if r.outcome not in ("ok", "clear error"):
        return Outcome(case, r.outcome, time.monotonic() - t0, f"kit results after the kill: {r.detail}")
    resumed = _run_command(Case("farm", "resume", ["run", "pipeline.toml", "--quiet"], expect="ok", timeout=300), d)
    if resumed.outcome not in ("ok", "clear error"):
        return Outcome(case, resumed.outcome, time.monotonic() - t0, f"resume: {resumed.detail}")
    statuses = invocations()
    if "running" in statuses or not statuses or statuses[0] != "interrupted":
        return Outcome(case, "silent", time.monotonic() - t0, f"after resume the invocations are {statuses}")
    return Outcome(case, "ok", time.monotonic() - t0, f"invocations {statuses}")


def classify(case: Case, code: int | None, out: str, err: str, seconds: float) -> Outcome:
    text = out + err
    if code is None:
        return Outcome(case, "hang", seconds, f"still running after {case.timeout:g} s")
    if code < 0:
        return Outcome(case, "crash", seconds, f"killed by {signal.Signals(-code).name}")
    if "Traceback (most recent call last)" in text:
        tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or ["?"]
        return Outcome(case, "traceback", seconds, tail[0][:200])
    first_error = next((ln for ln in err.splitlines() if ln.startswith("error:")), "")
    if code == 0:
        if case.expect == "error":
            return Outcome(case, "silent", seconds, "exit 0 on input that must be refused: "
                           + (out.strip().splitlines() or [""])[-1][:160])
        return Outcome(case, "ok", seconds, "")
    if case.expect == "ok":
        return Outcome(case, "traceback" if not first_error else "clear error", seconds,
                       f"exit {code} where success was expected: {first_error or text[-200:]}")
    if first_error or code in (1, 2):
        last = (text.strip().splitlines() or [""])[-1]
        claim = _false_wait(first_error or last, seconds)
        if claim:
            return Outcome(case, "silent", seconds, claim)
        return Outcome(case, "clear error", seconds, (first_error or last)[:200])
    return Outcome(case, "traceback", seconds, f"exit {code} without a message")


def _false_wait(message: str, seconds: float) -> str | None:
    """A message that says the kit waited `within N s` when the whole command took far less: a false figure."""
    for m in re.finditer(r"within (\d+(?:\.\d+)?) s\b", message):
        claimed = float(m.group(1))
        if claimed >= 2 and seconds < claimed / 2:
            return f"says 'within {m.group(1)} s' after {seconds:.1f} s: {message[:160]}"
    return None


def run_case(case: Case, cwd: Path) -> Outcome:
    if case.custom is not None:
        return case.custom(case, cwd)
    outcome = _run_command(case, cwd)
    if case.check is not None and outcome.outcome in ("ok", "clear error"):
        problem = case.check()
        if problem:
            return Outcome(case, "silent", outcome.seconds, problem)
    return outcome


def _run_command(case: Case, cwd: Path) -> Outcome:
    t0 = time.monotonic()
    proc = subprocess.Popen([*KIT, *case.argv], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=case.timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    return classify(case, code, out, err, time.monotonic() - t0)


# ---- hostile serial boards ------------------------------------------------------------------------------------


def start_boards() -> tuple[dict[str, str], list]:
    """Emulated boards on ptys, each misbehaving on one command (one behaves, for the option cases)."""
    from firmware_tools.emulator import EmulatedBoard

    class Board(EmulatedBoard):
        def __init__(self, model, on: str, mode: str):
            super().__init__(model, name="kws", modelled_latency_us=1000)
            self.on, self.mode = on, mode

        def handle(self, command):
            if command.split()[:1] == [self.on]:
                answers = {"bad-format": ["m-input-format-[dtype=int8,shape=1x49x10x1,bytes=abc]"],
                           "huge-lap": ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1",
                                        "m-lap-us-" + "7" * 5000, "m-lap-us-" + "8" * 5000, "m-infer-done",
                                        "m-results-[0.1]"],
                           "reset": ["m-warmup-start-0", "m-timestamp-mode-performance", "m-init-done"],
                           "lap-backwards": ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1",
                                             "m-lap-us-900000", "m-lap-us-100", "m-infer-done",
                                             "m-results-[0.1]"]}
                if self.mode in answers:
                    yield from answers[self.mode]
                    yield "m-ready"
                    return
            yield from super().handle(command)

        def _feed(self, byte, port):
            if byte == ord("%") and self._cmd.decode("ascii", "replace").split()[:1] == [self.on]:
                if self.mode == "silent":
                    self._cmd.clear()
                    return True
                if self.mode in ("babble", "slow-babble"):
                    size = 10000 if self.mode == "babble" else 50
                    end = time.monotonic() + 300
                    while not self._stop.is_set() and time.monotonic() < end:
                        try:
                            port.send(b"x" * size)
                        except OSError:
                            return False
                        time.sleep(0.05)
                    return False
            return super()._feed(byte, port)

    data = KWS.read_bytes()
    boards = [("answers a malformed input-format", Board(data, "input-format", "bad-format")),
              ("streams bytes without a line break", Board(data, "infer", "babble")),
              ("streams 1,000 bytes/s without a line break", Board(data, "infer", "slow-babble")),
              ("stops answering after profile", Board(data, "arena", "silent")),
              ("goes silent on infer", Board(data, "infer", "silent")),
              ("goes silent on profile", Board(data, "profile", "silent")),
              ("answers laps of 5,000 digits", Board(data, "infer", "huge-lap")),
              ("answers a lap that runs backwards", Board(data, "infer", "lap-backwards")),
              ("reboots in the middle of infer", Board(data, "infer", "reset")),
              ("answers like the reference firmware", Board(data, "none", "none"))]
    return {name: "serial://" + b.start_pty() for name, b in boards}, [b for _, b in boards]


# ---- fuzz: the reader -----------------------------------------------------------------------------------------


def mutants(seed: int, n: int) -> list[tuple[str, int, str, bytes]]:
    """(base model, index, mutation, bytes): one-byte flips, extreme 4-byte fields, truncations."""
    bases = [(p.name, p.read_bytes()) for p in (KWS, HELLO, AD01) if p.is_file()]
    rng = random.Random(seed)
    out = []
    extremes = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000]
    for i in range(n):
        name, data = bases[i % len(bases)]
        kind = rng.random()
        b = bytearray(data)
        if kind < 0.6:
            off, byte = rng.randrange(len(b)), rng.randrange(256)
            b[off] = byte
            how = f"byte {off}={byte}"
        elif kind < 0.9:
            off = rng.randrange(0, len(b) - 4) & ~3
            value = rng.choice(extremes)
            b[off:off + 4] = struct.pack("<I", value)
            how = f"u32 {off}={value:#x}"
        else:
            cut = rng.randrange(len(b))
            b = b[:cut]
            how = f"truncated to {cut}"
        out.append((name, i, how, bytes(b)))
    return out


def reader_worker(seed: int, n: int, start: int) -> None:
    """Child mode: read mutants start..n-1; print `start I` before and `done I OUTCOME DETAIL` after each."""
    from kit.core.errors import KitError
    from kit.core.tflite_file import read_tflite

    def alarm(*_):
        raise TimeoutError("read_tflite took more than 10 s")

    signal.signal(signal.SIGALRM, alarm)
    for name, i, how, data in mutants(seed, n)[start:]:
        print(f"start {i}", flush=True)
        signal.alarm(10)
        try:
            read_tflite(data)
            outcome, detail = "ok", ""
        except KitError as e:
            outcome, detail = "clear error", e.message[:120]
        except TimeoutError as e:
            outcome, detail = "hang", str(e)
        except Exception as e:  # noqa: BLE001  (any other exception is a traceback in the CLI)
            outcome, detail = "traceback", f"{type(e).__name__}: {e}"[:160]
        finally:
            signal.alarm(0)
        print(f"done {i} {json.dumps([outcome, f'{name} {how}: {detail}'])}", flush=True)


def run_worker(mode: str, seed: int, n: int, timeout: float) -> dict[int, tuple[str, str]]:
    """Run a worker until every case has an outcome; a case during which the worker died is a crash."""
    results: dict[int, tuple[str, str]] = {}
    start = 0
    while start < n:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", mode, "--seed", str(seed), "--count", str(n),
                                 "--start", str(start)], stdout=subprocess.PIPE, text=True)
        current = None
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            word, _, rest = line.partition(" ")
            if word == "start":
                current = int(rest)
            elif word == "done":
                i, _, payload = rest.partition(" ")
                results[int(i)] = tuple(json.loads(payload))
                current = None
            if time.monotonic() > deadline:
                proc.kill()
                break
        proc.wait()
        if current is None:
            break
        results[current] = ("crash", f"worker killed by signal {-proc.returncode}" if proc.returncode < 0
                            else f"worker ended with {proc.returncode}")
        start = current + 1
    return results


# ---- fuzz: the runtimes ---------------------------------------------------------------------------------------


def runtime_worker(seed: int, n: int, start: int) -> None:
    """Child mode: load reader-accepted mutants in TFLM / LiteRT, one forked grandchild per load."""
    import ai_edge_litert.interpreter  # noqa: F401  (imported once here, not in every forked child)
    import numpy as np
    import tflite_micro.python.tflite_micro.runtime  # noqa: F401

    from kit.convert.check import _load_and_run
    from kit.core.tflite_file import read_tflite

    for name, i, how, data in _accepted(seed, n)[start:]:
        runtime = ("tflm", "litert")[i % 2]
        print(f"start {i}", flush=True)
        info = read_tflite(data)
        x = None  # load only, unless the first input is small enough to invoke once
        if info.inputs:
            shape = [int(s) for s in info.tensor(info.inputs[0]).shape[1:]]
            if all(s > 0 for s in shape) and int(np.prod(shape)) < 10_000_000:
                x = np.zeros((1, *shape), np.float32)
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            status = _load_and_run(data, runtime, x)[0]
            os._exit(0 if status == "ok" else 3)
        _, st = os.waitpid(pid, 0)
        if os.WIFSIGNALED(st):
            sig = signal.Signals(os.WTERMSIG(st)).name
            outcome = "hang" if sig == "SIGALRM" else "crash"
            detail = f"{runtime} {sig}"
        else:
            outcome = "ok" if os.WEXITSTATUS(st) == 0 else "clear error"
            detail = runtime + ("" if outcome == "ok" else " refused it")
        print(f"done {i} {json.dumps([outcome, f'{name} {how}: {detail}'])}", flush=True)


def _accepted(seed: int, n: int) -> list[tuple[str, int, str, bytes]]:
    """The first n mutants (seed + 1000 stream) that read_tflite accepts: what reaches a runtime via the kit."""
    from kit.core.errors import KitError
    from kit.core.tflite_file import read_tflite

    out = []
    batch = 0
    while len(out) < n and batch < 50:
        for name, i, how, data in mutants(seed + 1000 + batch, 400):
            try:
                read_tflite(data)
            except KitError:
                continue  # refused by the reader: never reaches a runtime through the kit
            out.append((name, len(out), how, data))
            if len(out) == n:
                break
        batch += 1
    return out


def kit_runtime_path(seed: int, n: int, runtime_results: dict[int, tuple[str, str]], sample: int) -> list[tuple]:
    """Crashing/hanging mutants (and a sample of the rest) through the kit's isolated loader, in this process."""
    from kit.convert.check import load_error

    accepted = _accepted(seed, n)
    bad = [i for i, (o, _) in runtime_results.items() if o in ("crash", "hang")]
    rest = [i for i in runtime_results if i not in bad]
    chosen = bad + random.Random(seed).sample(rest, min(sample, len(rest)))
    rows = []
    for i in chosen:
        name, _, how, data = accepted[i]
        runtime = ("tflm", "litert")[i % 2]
        t0 = time.monotonic()
        try:
            error = load_error(data, runtime, name=f"{name}-mutant-{i}.tflite", timeout_s=30)
            outcome = "ok" if error is None else "clear error"
            detail = error or ""
        except Exception as e:  # noqa: BLE001  (any exception here is a traceback the user would see)
            outcome, detail = "traceback", f"{type(e).__name__}: {e}"
        raw = runtime_results[i][0]
        if raw in ("crash", "hang") and outcome == "ok":
            outcome, detail = "silent", f"the runtime alone ended in a {raw}; the kit's isolated load says ok"
        elif raw in ("crash", "hang") and f"{name}-mutant-{i}.tflite" not in detail:
            outcome, detail = "silent", f"the crash or hang is reported without the file's name: {detail}"
        rows.append((outcome, f"{name} {how} on {runtime} (raw: {runtime_results[i][0]}): {detail[:140]}",
                     time.monotonic() - t0))
    return rows


# ---- main -----------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reader", type=int, default=1000, help="mutants through the .tflite reader")
    ap.add_argument("--runtime", type=int, default=1000, help="runtime loads of reader-accepted mutants")
    ap.add_argument("--kit-sample", type=int, default=40, help="runtime-clean mutants also sent through the kit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="CLI cases run at once")
    ap.add_argument("--no-cli", action="store_true", help="fuzz only")
    ap.add_argument("--worker", choices=("reader", "runtime"), help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "reader":
        reader_worker(args.seed, args.count, args.start)
        return 0
    if args.worker == "runtime":
        runtime_worker(args.seed, args.count, args.start)
        return 0
    if not KWS.is_file() or not HELLO.is_file():
        print(f"needs {KWS} and {HELLO}", file=sys.stderr)
        return 2

    from kit.core.tables import format_table

    started = time.monotonic()
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    problems: list[str] = []

    def note(section: str, outcome: str, detail: str) -> None:
        counts[section][outcome] += 1
        if outcome in ("traceback", "crash", "hang", "silent"):
            problems.append(f"[{section}] {outcome}: {detail}")

    with tempfile.TemporaryDirectory(prefix="kit-robustness-") as tmp:
        work = Path(tmp)
        if not args.no_cli:
            files = build_inputs(work)
            pristine = make_run(work)
            runs = damaged_runs(pristine, work) if pristine else {}
            urls, boards = start_boards()
            cases = cli_cases(files, runs, work, urls)
            print(f"cli: {len(cases)} cases, {args.jobs} at a time", flush=True)
            lock = threading.Lock()

            def one(case: Case) -> Outcome:
                r = run_case(case, work)
                with lock:
                    print(f"  {r.outcome:<11} {r.seconds:6.1f} s  {case.section}: {case.name}"
                          + (f"  -- {r.detail}" if r.detail else ""), flush=True)
                return r

            with ThreadPoolExecutor(args.jobs) as pool:
                for r in pool.map(one, cases):
                    note(f"cli/{r.case.section}", r.outcome, f"{r.case.name}: {r.detail}")
            for b in boards:
                b.stop()
        if args.reader:
            t0 = time.monotonic()
            results = run_worker("reader", args.seed, args.reader, timeout=1800)
            for outcome, detail in results.values():
                note("reader", outcome, detail)
            print(f"reader: {len(results)} mutants in {time.monotonic() - t0:.0f} s", flush=True)
        if args.runtime:
            t0 = time.monotonic()
            results = run_worker("runtime", args.seed, args.runtime, timeout=3600)
            for outcome, _ in results.values():
                counts["runtime (raw, forked)"][outcome] += 1
            print(f"runtime: {len(results)} loads in {time.monotonic() - t0:.0f} s", flush=True)
            t0 = time.monotonic()
            rows = kit_runtime_path(args.seed, args.runtime, results, args.kit_sample)
            for outcome, detail, _ in rows:
                note("kit-runtime", outcome, detail)
            print(f"kit-runtime: {len(rows)} isolated loads in {time.monotonic() - t0:.0f} s; this process "
                  "survived all of them", flush=True)

    print()
    sections = sorted(counts)
    table = [[s, *(counts[s].get(o, 0) for o in OUTCOMES), sum(counts[s].values())] for s in sections]
    total = [sum(counts[s].get(o, 0) for s in sections if not s.startswith("runtime (raw")) for o in OUTCOMES]
    table.append(["total (kit)", *total, sum(total)])
    print(format_table(["section", *OUTCOMES, "cases"], table))
    print("runtime (raw, forked): the runtimes alone, no kit around them; their crashes and hangs are expected "
          "and are what kit-runtime sends through the kit")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
    print(f"\nwall time {time.monotonic() - started:.0f} s")
    bad = sum(total[OUTCOMES.index(o)] for o in ("traceback", "crash", "hang", "silent"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
