"""Dynamic instruction mix of one inference of the kit's Cortex-M4F firmware, and whether a Cortex-M4
cycle model of it explains the published NUCLEO-L4R5ZI latencies better than the instruction count does.

For each MLPerf Tiny int8 model (kws, vww, ic = ResNet-8, ad), `kit firmware`'s project is built by its
Makefile (CMSIS-NN kernels, -O2, `mps2-an386`) and booted in `qemu-system-arm -icount shift=0` with
`-d in_asm,exec,nochain -D FIFO`; the serial target drives it over the MLPerf Tiny protocol while the log
is parsed as a stream (nothing on disk). One inference is isolated between the first two entries of the
firmware's `BoardTimestampUs` (t0 and t1 of the first `infer 1 0`); its instructions are counted by class
(a TB that QEMU logs, then stops before it starts or rewinds to an I/O access, counts only for what ran),
checked against the firmware's own m-lap-us stamps, and costed with Cortex-M4 TRM cycle timings
(taken branch: 1 + 2 refill cycles; LDR 2, pipelined 1; LDM/STM 1 + registers; SDIV 7). Both the plain
instruction count and the TRM cycles are calibrated by one factor on kws alone (181.9 ms at 120 MHz, v0.5
reference results); vww, ic and ad are held out.

Goal: held-out latency error within +-10 % on vww, ic and ad (that of `firmware_tools/predict.py`), here
asking whether a per-class cycle model of the instruction mix can reach it where one cost per instruction fails.

    python benchmarks/bench_firmware_mix.py [--models kws,vww,ic,ad] [--out DIR] [--timeout 1200]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import kit  # noqa: F401  (environment before TensorFlow)
from bench_firmware import MLPERF, published  # the same models and published results (run from benchmarks/)
from firmware_tools.boards import qemu_board
from firmware_tools.build import build, default_tree
from firmware_tools.project import generate_project
from firmware_tools.qemu import ICOUNT_SHIFT, INSTRUCTIONS_PER_US, QEMU, QemuBoardProcess
from kit.core.errors import KitError
from kit.core.measurement import RunSettings
from kit.core.paths import shared_dir
from kit.core.tables import format_table
from targets.serial import SerialTarget
from targets.uri import TargetURI

BOARD, KERNELS, MHZ = "mps2-an386", "cmsis_nn", 120.0
MARK = "BoardTimestampUs"  # entered at t0 and at t1 of the timed loop
REFILL = 2  # TRM: a taken branch refills the pipeline in 1..3 cycles
LIMIT = 0.10  # the goal: every held-out error within +-10 %

# Cortex-M4 instruction classes, keyed by the mnemonics QEMU's disassembler prints (no condition, no .w)
CONDS = set("eq ne cs hs cc lo mi pl vs vc hi ls ge lt gt le al".split())
CLASS: dict[str, str] = {}
for _cls, _names in {
    "load": "ldr ldrb ldrh ldrsb ldrsh ldrex ldrexb ldrexh ldrt", "store": "str strb strh strex strt",
    "load2": "ldrd", "store2": "strd", "ldm": "ldm ldmia ldmdb pop", "stm": "stm stmia stmdb push",
    "vload": "vldr", "vstore": "vstr", "vldm": "vpop vldmia", "vstm": "vpush vstmia vstmdb",
    "mac": "smlad smladx smlsd smlsdx smlal smlald smlaldx smlabb smlabt smlatb smlatt smlawb smlawt smmla smmls "
           "mla mls umlal umaal smlalbb smlaltt",
    "mul": "mul muls smull umull smmul smmulr smuad smuadx smusd smulbb smulbt smultb smultt smulwb smulwt",
    "div": "sdiv udiv", "it": "it", "branch": "b bl blx bx cbz cbnz tbb tbh",
    "simd": "sxtb16 sxtab16 uxtb16 uxtab16 pkhbt pkhtb sadd16 ssub16 qadd16 qsub16 sadd8 ssub8 qadd8 qsub8 shadd16 "
            "uadd8 usub8 uqadd8 sel ssat16 usat16 qadd qsub qdadd qdsub ssat usat sasx ssax qasx qsax uadd16 usub16",
    "alu": "add and asr bic cmp eor lsl lsr mov mvn orn orr ror rsb sbc sub"}.items():  # anything else is ALU too
    for _m in _names.split():
        CLASS.setdefault(_m, _cls)
# table rows: label, classes summed
ROWS = [("scalar ALU", ("alu",)), ("SIMD (SXTB16, QADD16, SSAT, ...)", ("simd",)), ("MAC (SMLAD, MLA, ...)", ("mac",)),
        ("multiply", ("mul",)), ("divide", ("div",)), ("IT", ("it",)), ("loads (LDR*, LDRD)", ("load", "load2")),
        ("stores (STR*, STRD)", ("store", "store2")), ("LDM/POP", ("ldm", "ldm_pc")), ("  registers loaded", ("ldm_regs",)),
        ("STM/PUSH", ("stm",)), ("  registers stored", ("stm_regs",)),
        ("FPU (VLDR/VSTR/VPUSH/VPOP incl.)", ("fpu", "vload", "vstore", "vldm", "vstm")),
        ("branches taken", ("taken",)), ("branches not taken", ("not_taken",))]


def decode(mn: str) -> tuple[str, str]:
    """'addlt.w' -> ('add', 'alu'): the mnemonic without width suffix, condition or flag-setting S, and its class."""
    m = mn.split(".")[0]
    if not (m.startswith("v") or m in CLASS):
        cuts = (m[:-2] if m[-2:] in CONDS else "", m[:-1] if m.endswith("s") else "",
                m[:-3] if m[-2:] in CONDS and m[-3:-2] == "s" else "", "it" if m.startswith("it") else "")
        m = next((c for c in cuts if c in CLASS), m)
    return m, CLASS.get(m, "fpu" if m.startswith("v") else "alu")


def nregs(ops: str) -> int:
    """Registers in a {...} list; a d-register is two words."""
    m = re.search(r"\{([^}]*)\}", ops)
    spans = [r.strip().partition("-") for r in m.group(1).split(",")] if m else []
    return sum((int(hi.strip()[1:]) - int(lo[1:]) + 1 if hi else 1) * (2 if lo.startswith("d") else 1)
               for lo, _, hi in spans) if m else 1


def tb_cost(ins: list[tuple[int, int, str, str]]) -> tuple[int, Counter]:
    """TRM cycles of a translation block, a final B/BL/BX/CBZ excepted (its cost depends on whether it was
    taken, known from the trace), and its instruction classes: one execution's worth."""
    cycles, cls, prev = 0, Counter(), None
    for i, (_, _, mn, ops) in enumerate(ins):
        b, k = decode(mn)
        if b == "ldr" and ops.split(",")[0].strip() == "pc":
            k, c = "branch", 2 + REFILL
        elif k in ("load", "store"):
            c = 1 if prev == "load" else 2  # a load or store after a load pipelines
        elif k in ("load2", "store2"):
            c = 3
        elif k in ("ldm", "stm", "vldm", "vstm"):
            c = 1 + nregs(ops)
            if b in ("pop", "ldm", "ldmia") and "pc" in ops:
                k, c = "ldm_pc", c + REFILL
        elif k in ("vload", "vstore"):
            c = 2
        else:
            c = {"div": 7, "fpu": 14 if b in ("vdiv", "vsqrt") else 1,
                 "branch": 0 if i == len(ins) - 1 else 1 + REFILL}.get(k, 1)
        cls[k] += 1
        cls["ldm_regs"] += nregs(ops) if k in ("ldm", "ldm_pc") else 0
        cls["stm_regs"] += nregs(ops) if k == "stm" else 0
        cycles += c
        prev = k if k in ("load", "store") else None
    return cycles, cls


@dataclass
class Trace:
    """What the log parser saw: translation blocks by host code address, executions in the window, and
    (block, next pc) transitions, from which a final branch is known taken or not."""

    tbs: dict[bytes, list[tuple[int, int, str, str]]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    trans: Counter = field(default_factory=Counter)
    state: str = "before t0"


def parse_log(fifo: str, mark: int, trace: Trace) -> None:
    """Read QEMU's log as it is written: `IN:` blocks give each TB's instructions once, `Trace` lines each TB
    execution (nochain: every one); count from the first entry of `mark` to the next, then drain the log so
    that QEMU never blocks. A TB logged but then stopped before it started (icount budget spent) or rewound
    to an I/O access runs again and is logged again: only what ran counts."""
    stream = open(fifo, "rb", buffering=1 << 20)
    pending = prev = last = rewound = None
    try:
        for line in stream:
            if line.startswith(b"Trace"):
                parts = line.split(b" ", 4)
                key, pc = parts[2], int(parts[3][10:18], 16)
                if pending is not None:
                    trace.tbs.setdefault(key, pending)
                    pending = None
                if rewound is not None:  # the part of the rewound TB before the I/O access ran: a TB of its own
                    (prev, old, _, _), rewound = rewound, None
                    done = [i for i in trace.tbs[old] if i[0] < pc]
                    if done:
                        prev = b"%s@%x" % (old, pc)
                        trace.tbs[prev] = done
                        trace.counts[prev] += 1
                if trace.state == "in window" and pc == mark:
                    trace.state = "complete"
                    break
                if trace.state == "in window" or pc == mark:
                    last = (prev, key, pc, trace.state != "in window")
                    trace.trans[(prev, pc)] += trace.state == "in window"
                    trace.state = "in window"
                    trace.counts[key] += 1
                    prev = key
            elif line.startswith(b"Stopped execution") and last is not None:
                prev, key, pc, first = last
                trace.counts[key] -= 1
                trace.trans[(prev, pc)] -= not first
                trace.state = "before t0" if first else trace.state
                last = None
            elif line.startswith(b"cpu_io_recompile") and last is not None:
                rewound, last = last, None
                trace.counts[rewound[1]] -= 1
            elif line.startswith(b"0x") and pending is not None:
                addr, rest = line.decode(errors="replace").split(":", 1)
                rest = rest.strip()
                size = 4 if int(rest[:4], 16) >> 11 in (0x1d, 0x1e, 0x1f) else 2  # a 32-bit Thumb-2 encoding
                mn, _, ops = (rest[10:] if size == 4 else rest[5:]).strip().partition(" ")
                pending.append((int(addr, 16), size, mn, ops.strip()))
            elif line.startswith(b"IN:"):
                pending = []
    except Exception as e:  # noqa: BLE001  (reported by measure(): never a silent wrong count)
        trace.state = f"in a parse error ({e!r})"
    with stream:
        while stream.read(1 << 20):
            pass


@dataclass
class Mix:
    model: str
    instructions: int
    lap_instructions: int  # from the firmware's own m-lap-us stamps (1 us = 1,000 instructions)
    classes: Counter
    trm_cycles: int
    published_ms: float


def analyse(trace: Trace) -> tuple[int, Counter, int]:
    """Instructions, classes (branches split into taken / not taken) and TRM cycles of the window."""
    total = cycles = taken = 0
    classes: Counter = Counter()
    nexts: dict[bytes, Counter] = {}
    for (key, pc), n in trace.trans.items():
        nexts.setdefault(key, Counter())[pc] += n
    for key, n in trace.counts.items():
        ins = trace.tbs[key]
        c, cls = tb_cost(ins)
        total, cycles = total + n * len(ins), cycles + n * c
        classes.update({k: v * n for k, v in cls.items()})
        addr, size, mn, _ = ins[-1]
        traced = decode(mn)[1] == "branch"  # a final B/BL/BX/CBZ/TBB: taken unless the next block falls through
        if traced:
            t = sum(v for pc, v in nexts.get(key, {}).items() if pc != addr + size)
            cycles += t * (1 + REFILL) + (sum(nexts.get(key, {}).values()) - t)
            taken += t
        taken += n * (cls["branch"] - traced)  # LDR pc and mid-block branches always jump
    classes["taken"], classes["not_taken"] = taken, classes["branch"] - taken
    return total, classes, cycles


def function_address(elf: Path, name: str) -> int:
    """Entry address (Thumb bit cleared) of the function whose symbol contains `name`."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with elf.open("rb") as f:
        for s in (s for sec in ELFFile(f).iter_sections() if isinstance(sec, SymbolTableSection)
                  for s in sec.iter_symbols()):
            if name in s.name and s["st_info"]["type"] == "STT_FUNC":
                return s["st_value"] & ~1
    raise KitError(f"{elf} has no function {name}")


def boot_logged(elf: Path, fifo: str) -> QemuBoardProcess:
    """The project's QEMU command line plus the execution log into `fifo`; returns once the UART listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    board = qemu_board(BOARD)
    cmd = [QEMU, "-M", board.machine, "-display", "none", "-monitor", "none", "-nodefaults",
           "-chardev", f"socket,id=uart0,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on",
           "-serial", "chardev:uart0", "-icount", f"shift={ICOUNT_SHIFT}", "-kernel", str(elf),
           "-d", "in_asm,exec,nochain", "-D", fifo]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    qemu, deadline = QemuBoardProcess(board, elf, proc, port), time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        try:  # QEMU's UART server accepts again after this probe disconnects
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return qemu
        except OSError:
            time.sleep(0.05)
    why = proc.stderr.read().decode(errors="replace")[-300:] if proc.poll() is not None else "no UART port in 20 s"
    qemu.stop()
    raise KitError(f"QEMU did not start: {why}")


def measure(name: str, model: Path, elf: Path, published_ms: float, timeout_s: float) -> Mix:
    """Boot with the execution log and have the serial target run the model: its first `infer 1 0` is the
    window. QEMU is killed (process group) after `timeout_s` or when done; the fifo goes with its folder."""
    start, mark, trace = time.time(), function_address(elf, MARK), Trace()
    with tempfile.TemporaryDirectory(prefix="bench-mix-") as tmp:
        fifo = os.path.join(tmp, "log")
        os.mkfifo(fifo)
        reader = threading.Thread(target=parse_log, args=(fifo, mark, trace), daemon=True)
        reader.start()
        qemu = killer = target = None
        try:
            qemu = boot_logged(elf, fifo)
            killer = threading.Timer(timeout_s, qemu.stop)
            killer.start()
            target = SerialTarget(TargetURI(raw=qemu.url, scheme="socket"), chunk_bytes=120, connect_timeout=60)
            raw = target.run(target.deploy(model), RunSettings(warmup=0, runs=1, timeout_s=timeout_s))
        except KitError as e:
            late = time.time() - start >= timeout_s
            raise KitError(f"{name}: {'time limit of %.0f s reached' % timeout_s if late else 'failed'}: {e.message}") from None
        finally:
            for stop in (killer and killer.cancel, target and target.close, qemu and qemu.stop):
                if stop:
                    stop()
            if reader.is_alive():  # QEMU never opened the log: release the reader's open()
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
            reader.join(timeout=60)
    if trace.state != "complete":
        raise KitError(f"{name}: the log ended {trace.state} ({MARK} entered fewer than twice)")
    total, classes, cycles = analyse(trace)
    print(f"  {name}: {total:,} instructions counted in {time.time() - start:.0f} s", flush=True)
    return Mix(name, total, raw["calibration"].elapsed_us * INSTRUCTIONS_PER_US, classes, cycles, published_ms)


def report(mixes: list[Mix]) -> None:
    """The class table, the count check and CPIs, both one-factor predictions and the conclusion."""
    def cell(m: Mix, keys: tuple[str, ...]) -> str:
        n = sum(m.classes[k] for k in keys)
        return f"{n:,}" if keys[0].endswith("_regs") else f"{n:,} ({n / m.instructions:.1%})"

    print("\ninstructions of one inference by class (share of all):")
    print(format_table(["class", *(m.model for m in mixes)], [[label, *(cell(m, keys) for m in mixes)] for label, keys in ROWS]
                       + [["all instructions", *(f"{m.instructions:,}" for m in mixes)]]))
    real = {m.model: m.published_ms * MHZ * 1e3 for m in mixes}  # cycles at 120 MHz
    cpi = {m.model: (m.trm_cycles / m.instructions, real[m.model] / m.instructions) for m in mixes}
    print("\ncount check against the firmware's m-lap-us stamps (1 us = 1,000 instructions: +-1,000 is their resolution)"
          "\nand cycles per instruction (real CPI: published latency x 120 MHz / emulated instructions):")
    print(format_table(["model", "instructions (log)", "m-lap-us stamps", "difference", "TRM cycles", "TRM CPI",
                        "published ms", "real CPI"],
                       [[m.model, f"{m.instructions:,}", f"{m.lap_instructions:,}",
                         f"{m.instructions - m.lap_instructions:+,} ({m.instructions / m.lap_instructions - 1:+.3%})",
                         f"{m.trm_cycles:,}", f"{cpi[m.model][0]:.3f}", f"{m.published_ms:g}", f"{cpi[m.model][1]:.3f}"]
                        for m in mixes]))
    kws = next(m for m in mixes if m.model == "kws")
    ratio, scale = real["kws"] / kws.instructions, real["kws"] / kws.trm_cycles
    pred = {m.model: (m.instructions * ratio / MHZ / 1e3, m.trm_cycles * scale / MHZ / 1e3) for m in mixes}
    err = {m.model: tuple((p / m.published_ms - 1) * 100 for p in pred[m.model]) for m in mixes}
    print(f"\npredicted latency, calibrated on kws alone: instructions x {ratio:.3f} cycles, TRM cycles x {scale:.3f}")
    print(format_table(["model", "published ms", "instructions x ratio ms", "err", "TRM cycles x scale ms", "err"],
                       [[m.model, f"{m.published_ms:g}"] + [x for i in (0, 1) for x in (
                           f"{pred[m.model][i]:.2f}", "calibration" if m.model == "kws" else f"{err[m.model][i]:+.1f}%")]
                        for m in mixes]))
    held = [m.model for m in mixes if m.model != "kws"]
    if not held:
        print("\nno held-out model (--models kws only): no conclusion")
        return
    verdicts = []
    for i, label in enumerate(("instructions x one ratio", "TRM cycles x one scale")):
        worst = max(held, key=lambda m: abs(err[m][i]))
        ok = abs(err[worst][i]) <= LIMIT * 100
        verdicts.append(f"{label} {'within' if ok else 'NOT within'} +-{LIMIT:.0%} (worst {worst} {err[worst][i]:+.1f}%)")
    why = ("a per-class cycle model of the mix accounts for the board's CPI" if ok else  # ok: the TRM model's
           "the instruction mix of this build does not explain the board's cycles")
    trm, board = [c[0] for c in cpi.values()], [c[1] for c in cpi.values()]
    print(f"\nConclusion: {'; '.join(verdicts)} on {', '.join(held)}; real CPI spans {min(board):.2f}-{max(board):.2f} "
          f"while TRM CPI spans {min(trm):.2f}-{max(trm):.2f}: {why}.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="kws,vww,ic,ad", help="comma-separated, from kws,vww,ic,ad (kws calibrates)")
    ap.add_argument("--out", help="keep the firmware projects here (default: a temporary directory)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per model in QEMU before it is killed")
    args = ap.parse_args()
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    if set(wanted) - set(MLPERF) or "kws" not in wanted:
        ap.error(f"--models takes {','.join(MLPERF)} and must include kws (the calibration point); got {args.models}")
    shared = shared_dir()
    missing = [what for what, ok in (("../shared", shared), ("arm-none-eabi-gcc", shutil.which("arm-none-eabi-gcc")),
                                     (QEMU, shutil.which(QEMU)), ("a TFLite Micro tree", default_tree())) if not ok]
    if missing:
        print(f"skipped: {', '.join(missing)} not found")
        return 0
    ms = {task: latency for task, (latency, _) in published().items()}
    mixes, t0 = [], time.time()
    with tempfile.TemporaryDirectory(prefix="bench-firmware-mix-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for name in (m for m in MLPERF if m in wanted):
            model, t = shared / "models" / "mlperf-tiny" / MLPERF[name][1], time.time()
            try:  # as the qemu target builds: `kit firmware`'s project, uncompressed model, its Makefile
                elf = build(generate_project(model, out / name, methods=()).out_dir, BOARD, KERNELS).image
                print(f"  {name}: firmware built in {time.time() - t:.0f} s", flush=True)
                mixes.append(measure(name, model, elf, ms[MLPERF[name][0]], args.timeout))
            except KitError as e:
                print(f"{name}: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
                return 1
    report(mixes)
    print(f"\nwall time {time.time() - t0:.0f} s (builds, QEMU with the execution log, parsing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
