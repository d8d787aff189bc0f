"""Farm benchmark: 8 devices x 3 models with `kit run`; then the same run killed with SIGKILL at ~50% and resumed.

Devices: 4 emulated MCU boards (`kit emulate` processes on ptys, TFLite Micro,
host timing), 2 loopback SSH boards (real OpenSSH servers on 127.0.0.1; the
"board" is this machine) when /usr/sbin/sshd exists, 2 `local` slots. Models:
the MLPerf Tiny anomaly-detection and keyword-spotting int8 models and the
TFLM hello_world int8 model (../shared). All devices share this machine's CPU
cores, so per-job times include that contention; a device's "serial time" is
the sum of its own job times in the run.

Prints: wall time (scheduler, `kit run`'s own, and the whole process), sum of per-job
times, the busiest device's serial time and wall / busiest (goal <= 1.25),
parallel efficiency = sum of job times / (wall x devices); then for the
SIGKILL-at-~50% resume: rows before the kill, lost, duplicated, missing.

    python benchmarks/bench_farm.py [--runs 50] [--mcu-runs 20]
"""
from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kit.core.tables import format_table  # noqa: E402

SHARED = ROOT.parent / "shared"
MODELS = ["models/mlperf-tiny/ad01_int8.tflite", "models/mlperf-tiny/kws_ref_model.tflite",
          "models/tflm-examples/hello_world_int8.tflite"]
KIT = [sys.executable, "-m", "kit"]


def _emulator(model: Path) -> subprocess.Popen:
    return subprocess.Popen([*KIT, "emulate", str(model), "--pty"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)


def _farm(mcu_uris: list[str], ssh_boards: list, n_local: int) -> str:
    parts = ['[farm]\nname = "bench"\n\n[profiles.emulated-m4]\nkind = "mcu"\nformats = ["int8"]\n']
    for i, uri in enumerate(mcu_uris):
        parts.append(f'[[device]]\nname = "mcu-{i}"\nuri = "{uri}"\nprofile = "emulated-m4"\nclass = "mcu"\n')
    for i, b in enumerate(ssh_boards):
        parts.append(f'[[device]]\nname = "ssh-{i}"\nuri = "{b.uri}"\nprofile = "raspberry-pi-4"\nclass = "board"\n'
                     f'options = {{ identity = "{b.user_key_path}", known_hosts = "{b.known_hosts}", '
                     f'python = "{sys.executable}" }}\n')
    for i in range(n_local):
        parts.append(f'[[device]]\nname = "local-{i}"\nuri = "local"\nprofile = "host"\nclass = "host"\n')
    return "\n".join(parts)


def _pipeline(out: str, runs: int, mcu_runs: int) -> str:
    arts = "".join(f'[[artifact]]\npath = "{SHARED / m}"\n\n' for m in MODELS)
    return (f'name = "bench"\nfarm = "farm.toml"\nout = "{out}"\n\n{arts}[settings]\nruns = {runs}\nwarmup = 5\n'
            f'timeout_s = 120\n\n[settings.class.mcu]\nruns = {mcu_runs}\n')


def _rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT id, artifact_sha256, device, settings_hash, status, invocation, finished, "
                           "seconds FROM measurements ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _kit_run(d: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([*KIT, "run", str(d / name), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50, help="timed inferences per job on local and SSH devices")
    ap.add_argument("--mcu-runs", type=int, default=20, help="timed inferences per job on the emulated boards")
    args = ap.parse_args()
    missing = [m for m in MODELS if not (SHARED / m).is_file()]
    if missing:
        print(f"skipped: {', '.join(missing)} not found under {SHARED}")
        return 0
    from tests.support.loopback_sshd import SSHD, LoopbackSSHD  # the SSH tests' loopback sshd

    with tempfile.TemporaryDirectory(prefix="bench-farm-") as tmp, contextlib.ExitStack() as stack:
        d = Path(tmp)
        procs = [_emulator(SHARED / MODELS[2]) for _ in range(4)]
        stack.callback(lambda: [p.kill() for p in procs])
        uris = [p.stdout.readline().strip() for p in procs]
        ssh_boards = []
        if SSHD.exists():
            ssh_boards = [stack.enter_context(LoopbackSSHD(d / f"sshd{i}")) for i in range(2)]
            n_local = 2
        else:
            print("note: /usr/sbin/sshd is absent; the 2 SSH boards are replaced by 2 more local slots")
            n_local = 4
        (d / "farm.toml").write_text(_farm(uris, ssh_boards, n_local))
        (d / "full.toml").write_text(_pipeline("full", args.runs, args.mcu_runs))
        (d / "kill.toml").write_text(_pipeline("kill", args.runs, args.mcu_runs))

        t0 = time.monotonic()
        proc = _kit_run(d, "full.toml")
        out, err = proc.communicate(timeout=900)
        process_wall = time.monotonic() - t0
        if proc.returncode != 0:
            print(out, err)
            return 1
        times = re.search(r"wall time ([\d.]+) s: compression ([\d.]+) s, profiling on the devices ([\d.]+) s", out)
        run_wall, sched_wall = float(times.group(1)), float(times.group(3))
        rows = _rows(d / "full" / "results.db")
        per_device: dict[str, list[float]] = {}
        for r in rows:
            per_device.setdefault(r[2], []).append(r[7])
        job_sum = sum(r[7] for r in rows)
        busiest = max(per_device, key=lambda k: sum(per_device[k]))
        busiest_s = sum(per_device[busiest])
        ok = sum(1 for r in rows if r[4] == "ok")
        print(f"farm: {len(per_device)} devices x {len(MODELS)} models = {len(rows)} jobs ({ok} ok)")
        print(format_table(["device", "jobs", "serial time s"],
                           [[k, len(v), round(sum(v), 2)] for k, v in sorted(per_device.items())]))
        print(format_table(["figure", "value"], [
            ["wall time (scheduler) s", round(sched_wall, 2)],
            ["wall time (kit run, as it reports it) s", round(run_wall, 2)],
            ["wall time (whole kit run process) s", round(process_wall, 2)],
            ["sum of per-job times s", round(job_sum, 2)],
            [f"busiest device ({busiest}) serial time s", round(busiest_s, 2)],
            ["wall / busiest device (goal <= 1.25)", round(sched_wall / busiest_s, 3)],
            ["speed-up vs one job at a time", round(job_sum / sched_wall, 2)],
            ["parallel efficiency (sum / (wall x devices))", f"{100 * job_sum / (sched_wall * len(per_device)):.1f}%"],
        ]))

        db = d / "kill" / "results.db"
        proc = _kit_run(d, "kill.toml")
        total = len(rows)
        deadline = time.monotonic() + 600
        while len(_rows(db)) < total // 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = _rows(db)
        proc = _kit_run(d, "kill.toml")
        out, err = proc.communicate(timeout=900)
        after = _rows(db)
        after_by_id = {r[0]: r for r in after}
        lost = sum(1 for r in before if after_by_id.get(r[0]) != r)
        keys = [r[1:4] for r in after]
        rerun = int(re.search(r"running (\d+)", out).group(1)) if "running" in out else -1
        print()
        print(format_table(["SIGKILL at ~50% and resume", "value"], [
            ["jobs planned", total],
            ["rows stored before the kill", len(before)],
            ["jobs run by the resumed run", rerun],
            ["rows after the resume", len(after)],
            ["lost (goal 0)", lost],
            ["duplicated (goal 0)", len(keys) - len(set(keys))],
            ["missing (goal 0)", total - len(set(keys))],
            ["resumed run exit code", proc.returncode],
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
