"""Run a model in the TensorFlow Lite Micro Python runtime, in a child process.

The TFLM C++ runtime does not verify flatbuffers, so an odd or malicious model
can crash it; running it in a child process turns a crash into a `ModelError`
instead of taking the caller down. The child also captures what the runtime
prints (MicroPrintf goes to the C streams), so errors carry the runtime's own
words.

Parent side: `run_model` (outputs for a batch of inputs) and `search_arena`
(the smallest arena that allocates and invokes). Child side: `python -m
firmware_tools.tflm REQUEST_DIR`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.core.errors import ModelError
from kit.core.isolate import signal_name

#: TFLM aligns arena buffers to 16 bytes, so arena sizes are searched in 16-byte steps
ARENA_STEP = 16
#: no microcontroller has more; a model that needs more is refused
MAX_ARENA_BYTES = 256 * 1024 * 1024
_START_ARENA_BYTES = 16 * 1024
_MAX_RESTARTS = 16


@dataclass
class ArenaSearch:
    """Result of the minimum-arena search in the TFLM runtime."""

    min_bytes: int  # smallest multiple of ARENA_STEP that allocates and invokes
    failed_bytes: int  # min_bytes - ARENA_STEP: refused by the runtime
    failure: str  # what the runtime printed for failed_bytes
    head_bytes: int | None  # planned (non-persistent) tensor memory, from the recording allocator
    tail_bytes: int | None  # persistent memory (structs, kernel data), from the recording allocator
    trials: int


def run_model(model: bytes, inputs: list[np.ndarray], arena_bytes: int, alt_decompression_bytes: int = 0,
              timeout_s: float = 300.0) -> list[np.ndarray]:
    """Invoke the model once per sample; `inputs[i]` is a batch for model input i. Returns one batch per output."""
    arrays = {f"in{i}": np.ascontiguousarray(a) for i, a in enumerate(inputs)}
    result, outputs, _ = _call("run", model, {"arena": arena_bytes, "alt": alt_decompression_bytes}, arrays,
                               timeout_s)
    return [outputs[f"out{i}"] for i in range(result["outputs"])]


def search_arena(model: bytes, alt_decompression_bytes: int = 0, timeout_s: float = 300.0) -> ArenaSearch:
    """Binary-search the smallest tensor arena (16-byte steps) with which the model allocates and invokes.

    Some TFLM builds crash instead of failing cleanly on some too-small arenas; a size that crashes the
    child counts as refused (with the crash as its reason) and the search resumes in a fresh child.
    """
    params = {"alt": alt_decompression_bytes, "lo": 0, "lo_failure": "", "hi": None}
    for _ in range(_MAX_RESTARTS):
        result, _, crash = _call("arena", model, params, {}, timeout_s, crash_ok=True)
        if crash is None:
            return ArenaSearch(**result)
        size, reason = crash
        if size is None or (params["hi"] is not None and size >= params["hi"]):
            raise ModelError(f"the TFLM runtime crashed on this model: {reason}",
                             "check that the model is a valid full-int8 .tflite that TFLite Micro supports")
        if size > params["lo"]:
            params.update(lo=size, lo_failure=f"the runtime crashed instead of refusing the arena ({reason})")
        params["hi"] = result.get("hi", params["hi"])
        params["trials"] = params.get("trials", 0) + result.get("tries", 0)
    raise ModelError(f"the TFLM runtime crashed {_MAX_RESTARTS} times while sizing the arena",
                     "check that the model is a valid full-int8 .tflite that TFLite Micro supports")


def _call(task: str, model: bytes, params: dict, arrays: dict[str, np.ndarray], timeout_s: float,
          crash_ok: bool = False) -> tuple[dict, dict[str, np.ndarray], tuple[int | None, str] | None]:
    """Run a task in a child; with `crash_ok`, a crash is returned as (arena size being tried, reason)."""
    with tempfile.TemporaryDirectory(prefix="kit-tflm-") as tmp:
        d = Path(tmp)
        (d / "model.tflite").write_bytes(model)
        (d / "request.json").write_text(json.dumps({"task": task, **params}))
        if arrays:
            np.savez(d / "inputs.npz", **arrays)
        try:
            proc = subprocess.run([sys.executable, "-m", "firmware_tools.tflm", str(d)], capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ModelError(f"the TFLM runtime did not finish within {timeout_s:.0f} s",
                             "the model may be too large for a microcontroller") from None
        result_path = d / "result.json"
        if proc.returncode != 0 or not result_path.is_file():
            how = signal_name(-proc.returncode) if proc.returncode < 0 else f"exit code {proc.returncode}"
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
            reason = f"{how}{': ' + tail if tail else ''}"
            if crash_ok:
                progress = _progress(d)
                return progress, {}, (progress.get("trying"), reason)
            raise ModelError(f"the TFLM runtime crashed on this model ({reason})",
                             "check that the model is a valid full-int8 .tflite that TFLite Micro supports")
        result = json.loads(result_path.read_text())
        if "error" in result:
            raise ModelError(f"the TFLM runtime refused the model: {result['error']}", result.get("hint"))
        outputs: dict[str, np.ndarray] = {}
        if (d / "outputs.npz").is_file():
            with np.load(d / "outputs.npz") as z:
                outputs = {k: z[k] for k in z.files}
        return result, outputs, None


def _progress(d: Path) -> dict:
    """The arena search's last state, from the progress lines the child writes before each trial."""
    state: dict = {}
    path = d / "progress.txt"
    for line in path.read_text().splitlines() if path.is_file() else []:
        word, _, value = line.partition(" ")
        if word == "try":
            state["trying"] = int(value)
            state["tries"] = state.get("tries", 0) + 1
        elif word == "ok":
            state.pop("trying", None)
            state["hi"] = min(int(value), state.get("hi", int(value)))
        elif word == "fail":
            state.pop("trying", None)
    return state


# ---- child process ---------------------------------------------------------------------------------------------


class _Captured:
    """Redirect the C-level stdout/stderr to a file while the runtime runs, to read what MicroPrintf said."""

    def __enter__(self) -> "_Captured":
        sys.stdout.flush()
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        os.close(self._saved[0])
        os.close(self._saved[1])
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace").replace("\r", "")
        self._file.close()


def _interpreter(model: bytes, arena: int, alt: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena, alt_decompression_memory_size=alt)


def _try_arena(model: bytes, n_inputs: int, arena: int, alt: int) -> tuple[bool, str, object]:
    """Allocate with `arena` bytes and invoke once on zeros; (ok, runtime messages, interpreter)."""
    with _Captured() as cap:
        try:
            it = _interpreter(model, arena, alt)
            for i in range(n_inputs):
                d = it.get_input_details(i)
                it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
            it.invoke()
            ok, err = True, ""
        except (RuntimeError, ValueError) as e:
            it, ok, err = None, False, str(e)
    message = " ".join([*cap.text.split(), err]).strip() if not ok else cap.text
    return ok, message, it


def _allocations(interpreter) -> tuple[int | None, int | None]:
    import re

    with _Captured() as cap:
        interpreter.print_allocations()
    head = re.search(r"Arena allocation head (\d+) bytes", cap.text)
    tail = re.search(r"Arena allocation tail (\d+) bytes", cap.text)
    return (int(head.group(1)) if head else None, int(tail.group(1)) if tail else None)


def _task_arena(model: bytes, n_inputs: int, req: dict, d: Path) -> dict:
    """Binary search between `lo` (refused) and `hi` (works; probed upwards from 16 KiB when unknown)."""
    alt = int(req.get("alt", 0))
    lo, failure, hi = int(req.get("lo", 0)), str(req.get("lo_failure", "")), req.get("hi")
    trials = int(req.get("trials", 0))
    with open(d / "progress.txt", "a") as progress:

        def attempt(size: int) -> tuple[bool, str, object]:
            nonlocal trials
            trials += 1
            progress.write(f"try {size}\n")
            progress.flush()
            ok, msg, it = _try_arena(model, n_inputs, size, alt)
            progress.write(f"{'ok' if ok else 'fail'} {size}\n")
            progress.flush()
            return ok, msg, it

        if hi is None:
            hi = max(_START_ARENA_BYTES, 2 * lo)
            while True:
                ok, msg, _ = attempt(hi)
                if ok:
                    break
                lo, failure, hi = hi, msg, hi * 2
                if hi > MAX_ARENA_BYTES:
                    return {"error": f"the model does not allocate even in a {MAX_ARENA_BYTES}-byte arena: "
                                     f"{failure}",
                            "hint": "the model is far too large for a microcontroller, or uses an op TFLM "
                                    "cannot prepare"}
        hi = int(hi)
        while hi - lo > ARENA_STEP:
            mid = (lo + hi) // 2 // ARENA_STEP * ARENA_STEP
            ok, msg, _ = attempt(mid)
            if ok:
                hi = mid
            else:
                lo, failure = mid, msg
        if lo != hi - ARENA_STEP:  # make the step-below claim a measured fact
            ok, failure, _ = attempt(hi - ARENA_STEP)
            if ok:
                return {"error": "the arena search is not monotonic", "hint": "report this model as a bug"}
        ok, _, it = attempt(hi)
    head, tail = _allocations(it) if ok else (None, None)
    return {"min_bytes": hi, "failed_bytes": hi - ARENA_STEP, "failure": failure, "head_bytes": head,
            "tail_bytes": tail, "trials": trials}


def _task_run(model: bytes, n_in: int, n_out: int, req: dict, d: Path) -> dict:
    with np.load(d / "inputs.npz") as z:
        batches = [z[f"in{i}"] for i in range(len(z.files))]
    with _Captured() as cap:
        try:
            it = _interpreter(model, int(req["arena"]), int(req.get("alt", 0)))
        except (RuntimeError, ValueError) as e:
            it, err = None, str(e)
    if it is None:
        return {"error": " ".join([*cap.text.split(), err]).strip(),
                "hint": "give a larger arena or use ops TFLite Micro supports"}
    if len(batches) != n_in:
        return {"error": f"the model has {n_in} input(s) but {len(batches)} were given"}
    count = len(batches[0]) if batches else 0
    outs: list[list[np.ndarray]] = [[] for _ in range(n_out)]
    for s in range(count):
        with _Captured() as cap:
            try:
                for i, b in enumerate(batches):
                    d_in = it.get_input_details(i)
                    it.set_input(np.asarray(b[s], dtype=d_in["dtype"]).reshape(d_in["shape"]), i)
                it.invoke()
                err = None
            except (RuntimeError, ValueError) as e:
                err = str(e)
        if err is not None:
            return {"error": f"sample {s}: " + " ".join([*cap.text.split(), err]).strip()}
        for o in range(n_out):
            outs[o].append(np.asarray(it.get_output(o)).copy())
    np.savez(d / "outputs.npz", **{f"out{o}": np.stack(v) if v else np.zeros((0,)) for o, v in enumerate(outs)})
    return {"outputs": n_out, "samples": count}


def _child(d: Path) -> None:
    from kit.core.errors import KitError
    from kit.core.tflite_file import read_tflite

    req = json.loads((d / "request.json").read_text())
    model = (d / "model.tflite").read_bytes()
    try:
        info = read_tflite(model)  # the C++ runtime trusts the flatbuffer; check it here first
    except KitError as e:
        result = {"error": e.message, "hint": e.hint}
    else:
        if req["task"] == "arena":
            result = _task_arena(model, len(info.inputs), req, d)
        elif req["task"] == "run":
            result = _task_run(model, len(info.inputs), len(info.outputs), req, d)
        else:
            result = {"error": f"unknown task {req['task']!r}"}
    (d / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
