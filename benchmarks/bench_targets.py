"""Profile the MLPerf Tiny int8 models on `local` and on a loopback SSH board; print latency and the kit's overhead.

Figures printed:
- latency median / p99 per model and target (µs);
- local measurement overhead: the local target's median (runner in a fresh
  process) against a bare `ai_edge_litert` `invoke()` loop in this process,
  interleaved over several rounds (goal: within 3 %);
- SSH overhead: end-to-end wall time of `profile()` minus the time the runner
  spent on the device (model load + first inference + warm-up + timed runs,
  warm-up taken as warm-up count x mean latency) (goal: <= 2 s per model).
  The SSH connection is opened once before the models (its cost is printed
  separately), as `kit profile` does for several models.

The SSH board is this machine behind a real OpenSSH server on 127.0.0.1
started here (needs /usr/sbin/sshd); no Raspberry Pi or other board was used.

    /work/venv/bin/python benchmarks/bench_targets.py [--runs 1000] [--rounds 3] [MODEL.tflite ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kit  # noqa: E402,F401
from kit.core.tables import format_table  # noqa: E402
from targets.base import RunSettings  # noqa: E402
from targets.local import LocalTarget  # noqa: E402
from targets.uri import parse_target_uri  # noqa: E402

SHARED = ROOT.parent / "shared" / "models" / "mlperf-tiny"


def default_models() -> list[Path]:
    found = sorted(SHARED.glob("*int8*.tflite"))
    found += [SHARED / "pretrainedResnet_quant.tflite", SHARED / "kws_ref_model.tflite"]
    return [p for p in found if p.is_file()]


def bare_median_us(model: Path, settings: RunSettings) -> float:
    """The same timing loop as the runner, in this process, with nothing around it."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model), num_threads=settings.threads)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
        x = rng.integers(info.min, info.max, size=d["shape"], endpoint=True, dtype=d["dtype"]) if info else \
            rng.random(size=d["shape"], dtype=np.float32).astype(d["dtype"])
        it.set_tensor(d["index"], x)
    invoke, clock = it.invoke, time.perf_counter_ns
    invoke()
    for _ in range(settings.warmup):
        invoke()
    samples = []
    for _ in range(settings.runs):
        t0 = clock()
        invoke()
        samples.append((clock() - t0) / 1e3)
    return statistics.median(samples)


def device_seconds(result) -> float:
    lat = result.latency
    return (result.init_us + result.first_inference_us + (result.settings.warmup + lat.count) * lat.mean_us) / 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", type=Path, help="extra .tflite files (e.g. the kit's LeNet artifacts)")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3, help="interleaved bare/local rounds per model")
    a = p.parse_args()
    models = default_models() + a.models
    if not models:
        print(f"no models: {SHARED} is absent and none were given")
        return 1
    settings = RunSettings(runs=a.runs, warmup=a.warmup, timeout_s=600)
    local = LocalTarget(parse_target_uri("local"))
    print(f"{len(models)} models, {a.runs} timed runs + {a.warmup} warm-up, 1 thread, default delegate (XNNPACK)\n")

    latency_rows, local_rows, ssh_rows = [], [], []
    local_results, ssh_results = {}, {}
    for m in models:
        bare, rounds = [], []
        for _ in range(a.rounds):
            bare.append(bare_median_us(m, settings))
            rounds.append(local.profile(m, settings))
        rounds.sort(key=lambda r: r.latency.median_us)
        local_results[m] = rounds[len(rounds) // 2]  # the median round, for the latency table too
        b, k = statistics.median(bare), statistics.median(r.latency.median_us for r in rounds)
        local_rows.append([m.name, b, k, f"{(k - b) / b * 100:+.1f} %", "yes" if abs(k - b) / b <= 0.03 else "no"])

    from tests.support.loopback_sshd import SSHD, LoopbackSSHD  # the SSH tests' loopback sshd

    if not SSHD.exists():
        print("/usr/sbin/sshd is absent: SSH figures skipped (apt-get install openssh-server)\n")
    else:
        from targets.ssh import SSHTarget

        with tempfile.TemporaryDirectory() as tmp, LoopbackSSHD(Path(tmp)) as board:
            target = SSHTarget(parse_target_uri(board.uri), None, identity=str(board.user_key_path),
                               known_hosts=str(board.known_hosts), python=sys.executable)
            with target:
                t0 = time.perf_counter()
                target.device_info()
                print(f"SSH connect + device description: {time.perf_counter() - t0:.2f} s "
                      f"(once, before the models)\n")
                for m in models:
                    phases = {}
                    t_start = time.perf_counter()
                    t = t_start
                    deployment = target.deploy(m)
                    phases["deploy"] = time.perf_counter() - t
                    try:
                        t = time.perf_counter()
                        raw = target.run(deployment, settings)
                        phases["run"] = time.perf_counter() - t
                        result = target.collect(deployment, raw, settings)
                    finally:
                        t = time.perf_counter()
                        target.cleanup(deployment)
                        phases["cleanup"] = time.perf_counter() - t
                    wall = time.perf_counter() - t_start
                    ssh_results[m] = result
                    dev = device_seconds(result)
                    ssh_rows.append([m.name, wall, dev, wall - dev, phases["deploy"], phases["run"], phases["cleanup"],
                                     "yes" if wall - dev <= 2.0 else "no"])

    for m in models:
        lr, sr = local_results[m].latency, ssh_results[m].latency if m in ssh_results else None
        latency_rows.append([m.name, lr.median_us, lr.p99_us, sr.median_us if sr else None, sr.p99_us if sr else None])
    print("Latency per inference (us)")
    print(format_table(["model", "local median", "local p99", "ssh median", "ssh p99"], latency_rows))
    print("\nLocal measurement overhead: kit local target vs bare invoke() loop in this process "
          f"(median of {a.rounds} interleaved rounds)")
    print(format_table(["model", "bare median us", "kit median us", "difference", "within 3 %"], local_rows))
    if ssh_rows:
        print("\nSSH overhead per model: end-to-end wall time minus on-device run time (s)")
        print(format_table(["model", "wall s", "on device s", "overhead s", "deploy s", "run s", "cleanup s", "<= 2 s"],
                           ssh_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
