"""Bad input against the real CLI and runtimes: a generated matrix plus fuzz; counts per outcome.

Sections (each case has a time limit; nothing is mocked):
- cli: bad models, recipes, data, target URIs, outputs, results stores and
  serial boards, each run as a real `python -m kit …` subprocess. Outcomes:
  ok (exit 0 where 0 is right), clear error (exit 1/2 with an `error:` line
  and no traceback), traceback, crash (the kit process killed by a signal),
  hang (still running at the time limit), silent (exit 0 on input that must
  be refused).
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
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
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


@dataclass
class Case:
    section: str
    name: str
    argv: list[str] = field(default_factory=list)
    expect: str = "error"  # "error": must be refused; "ok": must succeed; "any": either is right
    timeout: float = 120.0
    stdin: str | None = None


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
    proc = subprocess.run([*KIT, "run", "pipeline.toml"], cwd=d, capture_output=True, text=True, timeout=300)
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
        Case("output", "profile --json into a missing folder",
             ["profile", hello, "--target", "local", "--json", str(work / "no/such/dir/r.json")], timeout=90),
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
        c.append(Case("serial", f"profile a board that {name}",
                      ["profile", str(f["kws.tflite"]), "--target", url, "--option", "line_timeout=0.5"],
                      timeout=120))
    return c


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
        return Outcome(case, "clear error", seconds, (first_error or last)[:200])
    return Outcome(case, "traceback", seconds, f"exit {code} without a message")


def run_case(case: Case, cwd: Path) -> Outcome:
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
    """Emulated boards on ptys: one answering a malformed input-format, one streaming bytes, one going silent."""
    from firmware_tools.emulator import EmulatedBoard

    class Board(EmulatedBoard):
        def __init__(self, model, on: str, mode: str):
            super().__init__(model, name="kws", modelled_latency_us=1000)
            self.on, self.mode = on, mode

        def handle(self, command):
            if self.mode == "bad-format" and command.split()[:1] == [self.on]:
                yield "m-input-format-[dtype=int8,shape=1x49x10x1,bytes=abc]"
                yield "m-ready"
                return
            yield from super().handle(command)

        def _feed(self, byte, port):
            if byte == ord("%") and self._cmd.decode("ascii", "replace").split()[:1] == [self.on]:
                if self.mode == "silent":
                    self._cmd.clear()
                    return True
                if self.mode == "babble":
                    end = time.monotonic() + 300
                    while not self._stop.is_set() and time.monotonic() < end:
                        try:
                            port.send(b"x" * 10000)
                        except OSError:
                            return False
                        time.sleep(0.05)
                    return False
            return super()._feed(byte, port)

    data = KWS.read_bytes()
    boards = [("answers a malformed input-format", Board(data, "input-format", "bad-format")),
              ("streams bytes without a line break", Board(data, "infer", "babble")),
              ("stops answering after profile", Board(data, "arena", "silent"))]
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
        except Exception as e:  # a traceback in the CLI
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
    import numpy as np
    import ai_edge_litert.interpreter  # noqa: F401  (imported once here, not in every forked child)
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
            except (KitError, Exception):
                continue
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
        except Exception as e:
            outcome, detail = "traceback", f"{type(e).__name__}: {e}"
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
