"""An emulated aarch64 board: Debian arm64 sysroot + aarch64 LiteRT wheels, run under qemu-user.

Phones, Raspberry Pis and Coral boards run aarch64 LiteRT, whose XNNPACK kernels (NEON, fp16, the sparse
path) differ from the x86 ones. Without the hardware the real aarch64 code still runs under qemu-user:
`build_board(DIR)` makes

    DIR/tools/qemu-aarch64        QEMU >= 8.1 user-mode emulator (Debian trixie `qemu-user`, unpacked)
    DIR/tools/debootstrap/        Debian's debootstrap (unpacked), only to fetch the sysroot
    DIR/sysroot/                  Debian bookworm arm64 minbase + python3 (every .deb unpacked with dpkg -x)
    DIR/site/                     aarch64 cp3X wheels: ai-edge-litert and numpy (pip --platform …_aarch64)
    DIR/python3-aarch64           the board's python: `exec qemu-aarch64 -L sysroot … python3.X "$@"`
    DIR/emulated-arm64.toml       the `emulated-arm64` device profile with `extra.python` set to the wrapper

Nothing is installed on the machine: packages are fetched with `apt-get download` through a private apt
state folder (DIR/apt) and unpacked with `dpkg -x`, so no maintainer script or dpkg trigger runs and no
binfmt handler is registered (/proc/sys/fs/binfmt_misc is machine-wide); the emulator is called
explicitly. QEMU 7.2 (bookworm) crashes LiteRT >= 2.2: it passes the host's x86 /proc/cpuinfo to the
guest, which LiteRT's cpuinfo library cannot parse; QEMU >= 8.1 emulates it.

Each stage keeps a stamp of its inputs and is reused when they match, so a second build is instant.
The wrapper `exec`s the emulator, so the PID an SSH target records is the emulator's and a timed-out
run can still be killed. Latency measured through it is emulation time (see `EMULATED_LATENCY`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit.core.arm64_board import PROFILE_NAME, WRAPPER_NAME
from kit.core.arm64_board import STAMP as _STAMP
from kit.core.errors import TargetError
from targets.runner import EMULATED_LATENCY as EMULATED_LATENCY_TEMPLATE

#: label of every latency measured on an emulated board (notes of its ProfileResults)
EMULATED_LATENCY = EMULATED_LATENCY_TEMPLATE.format(how="qemu-user")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: suite of the arm64 sysroot (glibc 2.36, CPython 3.11) and of the tools (QEMU 10, emulated /proc/cpuinfo)
SYSROOT_SUITE = "bookworm"
TOOLS_SUITE = "trixie"
DEFAULT_LITERT = "ai-edge-litert"
#: QEMU's model of the Raspberry Pi 5 core; "max" enables SVE2/SME paths no phone core has
DEFAULT_QEMU_CPU = "cortex-a76"
_MIN_QEMU = (8, 1)


@dataclass
class StageTime:
    """Wall time of one build stage; `reused` when its stamp matched and nothing was done."""

    name: str
    seconds: float
    reused: bool
    detail: str = ""


@dataclass
class Board:
    """A built board: where its parts are and what the aarch64 python reported."""

    root: Path
    wrapper: Path
    profile: Path
    stages: list[StageTime] = field(default_factory=list)
    device: dict = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.stages)


def build_board(root: str | Path, litert: str = DEFAULT_LITERT, qemu_cpu: str = DEFAULT_QEMU_CPU,
                mirror: str = DEBIAN_MIRROR, log: Callable[[str], None] = print) -> Board:
    """Build (or reuse) the emulated board in `root`; print each stage's wall time through `log`."""
    root = Path(root).expanduser().resolve()
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", qemu_cpu):
        raise TargetError(f"qemu cpu {qemu_cpu!r} is not a CPU model name", "e.g. cortex-a76, cortex-a53 or max")
    _require_tools()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TargetError(f"cannot create the board folder {root}: {e}") from None
    stages: list[StageTime] = []

    def stage(name: str, inputs: dict, make: Callable[[Path], str], folder: Path | None = None) -> None:
        t0 = time.monotonic()
        if folder is not None and _stamp_matches(folder, inputs):
            st = StageTime(name, time.monotonic() - t0, True, "reused")
        else:
            detail = make(folder) if folder is not None else make(root)
            st = StageTime(name, time.monotonic() - t0, False, detail or "")
            if folder is not None:
                (folder / _STAMP).write_text(json.dumps(inputs, sort_keys=True))
        stages.append(st)
        log(f"  {name:<10} {st.seconds:7.1f} s  {st.detail}")

    log(f"building the emulated aarch64 board in {root}")
    stage("tools", {"suite": TOOLS_SUITE, "mirror": mirror}, lambda d: _build_tools(root, d, mirror), root / "tools")
    stage("sysroot", {"suite": SYSROOT_SUITE, "mirror": mirror},
          lambda d: _build_sysroot(root, d, mirror), root / "sysroot")
    py = _sysroot_python(root / "sysroot")
    stage("site", {"litert": litert, "python": py}, lambda d: _build_site(d, litert, py), root / "site")
    stage("precompile", {"python": py, "host": _host_python()}, lambda d: _precompile(root / "sysroot", py),
          root / "sysroot" / "usr" / "lib" / f"python{py}")
    wrapper, profile = root / WRAPPER_NAME, root / PROFILE_NAME
    stage("wrapper", {}, lambda _: _write_wrapper(wrapper, py, qemu_cpu) or _write_profile(profile, wrapper, qemu_cpu))
    board = Board(root, wrapper, profile, stages)
    t0 = time.monotonic()
    board.device = check_board(wrapper)
    stages.append(StageTime("check", time.monotonic() - t0, False,
                            f"{board.device.get('machine')} python {board.device.get('python')}, "
                            f"{board.device.get('runtime')} {board.device.get('runtime_version')}"))
    log(f"  {'check':<10} {stages[-1].seconds:7.1f} s  {stages[-1].detail}")
    log(f"board ready in {board.total_seconds:.1f} s: python {wrapper}, profile {profile}")
    return board


def check_board(wrapper: str | Path, timeout_s: float = 300.0) -> dict:
    """Start the board's python on the runner (`--info`) and return its device description."""
    from targets.runner import RUNNER

    res = _run([str(wrapper), str(RUNNER), "--info"], "starting the aarch64 python", timeout_s=timeout_s)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    try:
        device = json.loads(lines[-1])["device"]
    except (IndexError, KeyError, json.JSONDecodeError):
        raise TargetError(f"the board's python printed no device description: {_tail(res)}") from None
    if device.get("machine") != "aarch64" or not device.get("runtime"):
        raise TargetError(f"the board's python is not an aarch64 LiteRT python: {device}",
                          "rebuild the board in an empty folder")
    return device


# -- stages -----------------------------------------------------------------------------------------


def _build_tools(root: Path, out: Path, mirror: str) -> str:
    """qemu-user and debootstrap from Debian trixie, fetched through a private apt state and unpacked."""
    apt = root / "apt"
    for d in ("lists/partial", "cache/archives/partial", "etc"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "etc" / "sources.list").write_text(f"deb {mirror} {TOOLS_SUITE} main\n")
    opts = ["-o", f"Dir::Etc::SourceList={apt}/etc/sources.list", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={apt}/lists", "-o", f"Dir::Cache={apt}/cache",
            "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1"]
    _run(["apt-get", *opts, "-qq", "update"], f"apt-get update for Debian {TOOLS_SUITE} (private apt state)",
         hint=f"check the network and that {mirror} is reachable (HTTP proxy: set http_proxy)")
    debs = root / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir()
    _run(["apt-get", *opts, "download", "qemu-user", "debootstrap"], "apt-get download qemu-user debootstrap",
         cwd=debs, hint=f"check the network and that {mirror} is reachable")
    unpack = root / "tools.tmp"
    shutil.rmtree(unpack, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(unpack)], f"unpacking {deb.name}")
    qemu = next((p for p in (unpack / "usr/bin/qemu-aarch64-static", unpack / "usr/bin/qemu-aarch64") if p.is_file()),
                None)
    if qemu is None:
        raise TargetError(f"the {TOOLS_SUITE} qemu-user package holds no qemu-aarch64",
                          f"look at {debs} and report the package layout")
    shutil.rmtree(out, ignore_errors=True)
    (out / "debootstrap").mkdir(parents=True)
    shutil.copy2(qemu, out / "qemu-aarch64")
    shutil.move(str(unpack / "usr/sbin/debootstrap"), out / "debootstrap" / "debootstrap")
    shutil.move(str(unpack / "usr/share/debootstrap"), out / "debootstrap" / "share")
    shutil.rmtree(unpack)  # the rest of qemu-user is ~400 MB of other architectures' emulators
    shutil.rmtree(debs)
    version = qemu_version(out / "qemu-aarch64")
    if version < _MIN_QEMU:
        raise TargetError(f"qemu-aarch64 {'.'.join(map(str, version))} is older than 8.1",
                          "LiteRT >= 2.2 crashes under QEMU < 8.1 (no emulated /proc/cpuinfo)")
    return f"qemu-aarch64 {'.'.join(map(str, version))} + debootstrap ({TOOLS_SUITE}, unpacked, not installed)"


def qemu_version(qemu: Path) -> tuple[int, ...]:
    res = _run([str(qemu), "--version"], "reading the qemu version")
    m = re.search(r"version (\d+)\.(\d+)", res.stdout)
    if not m:
        raise TargetError(f"cannot read the version of {qemu}: {_tail(res)}")
    return int(m.group(1)), int(m.group(2))


def _build_sysroot(root: Path, out: Path, mirror: str) -> str:
    """`debootstrap --foreign` only downloads; every .deb is then unpacked, so no second stage (no chroot) runs."""
    if os.geteuid() != 0:
        raise TargetError("debootstrap needs root to build the sysroot",
                          "run `kit board arm64` as root (CI does), or copy a board built elsewhere")
    tmp = root / "sysroot.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    boot = root / "tools" / "debootstrap"
    env = {**os.environ, "DEBOOTSTRAP_DIR": str(boot / "share")}
    _run([str(boot / "debootstrap"), "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3",
          SYSROOT_SUITE, str(tmp), mirror], f"debootstrap of Debian {SYSROOT_SUITE} arm64", env=env,
         hint=f"check the network and that {mirror} is reachable; debootstrap needs wget")
    archives = tmp / "var" / "cache" / "apt" / "archives"
    debs = sorted(archives.glob("*.deb"))
    for deb in debs:
        _run(["dpkg", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
        deb.unlink()
    shutil.rmtree(tmp / "debootstrap", ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return f"Debian {SYSROOT_SUITE} arm64 minbase + python3, {len(debs)} packages unpacked"


def _sysroot_python(sysroot: Path) -> str:
    found = sorted(p.name[len("python"):] for p in (sysroot / "usr" / "bin").glob("python3.*")
                   if re.fullmatch(r"python3\.\d+", p.name))
    if not found:
        raise TargetError(f"no python3.X in {sysroot}/usr/bin", f"remove {sysroot} and build again")
    return found[-1]


def _build_site(out: Path, litert: str, py: str) -> str:
    """aarch64 wheels for the sysroot's CPython; pip lists every manylinux tag up to bookworm's glibc 2.36."""
    tmp = out.with_name("site.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plat = ["--platform", "manylinux2014_aarch64"]
    for minor in range(17, 37):  # pip does not widen manylinux_2_X to older tags by itself
        plat += ["--platform", f"manylinux_2_{minor}_aarch64"]
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-cache-dir", "--target", str(tmp), *plat,
          "--python-version", py, "--implementation", "cp", "--only-binary=:all:", litert, "numpy"],
         f"pip download of aarch64 wheels ({litert}, numpy)",
         hint="check the network and the package index (pip config / PIP_INDEX_URL)")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    found = [p.name.removesuffix(".dist-info").split("-") for p in out.glob("*.dist-info")]
    versions = sorted(f"{n[0]} {n[1]}" for n in found if n[0] in ("ai_edge_litert", "numpy"))
    return ", ".join(versions)


def _host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _precompile(sysroot: Path, py: str) -> str:
    """dpkg -x skips py3compile: compile the stdlib once with the host CPython of the same version (same
    bytecode), so every emulated start does not recompile it; skipped for another host version."""
    if _host_python() != py:
        return f"skipped: the host python is {_host_python()}, the sysroot's {py} (emulated starts recompile)"
    _run([sys.executable, "-m", "compileall", "-q", "-j", "2", str(sysroot / "usr" / "lib" / f"python{py}")],
         "precompiling the sysroot's stdlib", check=False)
    return f"stdlib .pyc for python {py}"


def _write_wrapper(path: Path, py: str, qemu_cpu: str) -> None:
    path.write_text(f"""#!/bin/sh
# The emulated aarch64 board's python (built by `kit board arm64`): aarch64 CPython {py} from the Debian
# sysroot under qemu-user, called explicitly (no binfmt). exec keeps the caller's PID, so a timeout can kill it.
# QEMU_CPU overrides the CPU model ({qemu_cpu}: Raspberry Pi 5 core); "max" enables SVE2/SME.
B=$(dirname "$(readlink -f "$0")")
exec "$B/tools/qemu-aarch64" -L "$B/sysroot" -E "PYTHONPATH=$B/site" -cpu "${{QEMU_CPU:-{qemu_cpu}}}" \\
  "$B/sysroot/usr/bin/python{py}" "$@"
""")
    path.chmod(0o755)


def _write_profile(path: Path, wrapper: Path, qemu_cpu: str) -> str:
    from targets.profiles import PROFILE_DIR

    shipped = (PROFILE_DIR / PROFILE_NAME).read_text()
    text = shipped.replace('python = "python3-aarch64"', f"python = {json.dumps(str(wrapper))}")
    text = text.replace('qemu_cpu = "cortex-a76"', f"qemu_cpu = {json.dumps(qemu_cpu)}")
    path.write_text(text)
    return f"{path.name}, {wrapper.name} (-cpu {qemu_cpu})"


# -- helpers ----------------------------------------------------------------------------------------


def _require_tools() -> None:
    missing = [t for t in ("apt-get", "dpkg") if shutil.which(t) is None]
    if missing:
        raise TargetError(f"building the emulated board needs {' and '.join(missing)} (Debian's package tools)",
                          "run it on Debian or Ubuntu, or copy a board folder built on one")
    if shutil.which("wget") is None:
        raise TargetError("debootstrap needs wget, which is not installed", "apt-get install wget")


def _stamp_matches(folder: Path, inputs: dict) -> bool:
    try:
        return json.loads((folder / _STAMP).read_text()) == inputs
    except (OSError, json.JSONDecodeError):
        return False


def _tail(res: subprocess.CompletedProcess) -> str:
    lines = ((res.stderr or "") + (res.stdout or "")).strip().splitlines()
    return " | ".join(lines[-6:])[-800:] or f"exit code {res.returncode}"


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict | None = None, hint: str | None = None,
         check: bool = True, timeout_s: float = 1800.0) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise TargetError(f"{what}: {cmd[0]} is not installed or not executable", hint) from None
    except subprocess.TimeoutExpired:
        raise TargetError(f"{what} took longer than {timeout_s:.0f} s", hint) from None
    if check and res.returncode != 0:
        raise TargetError(f"{what} failed (exit code {res.returncode}): {_tail(res)}", hint)
    return res


def stages_json(board: Board) -> str:
    """The build's stage times as strict JSON (for CI logs and the setup-time figure in docs/arm64.md)."""
    return json.dumps({"root": str(board.root), "wrapper": str(board.wrapper), "profile": str(board.profile),
                       "total_s": round(board.total_seconds, 1), "device": board.device,
                       "stages": [asdict(s) for s in board.stages]}, allow_nan=False)
