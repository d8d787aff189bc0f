"""Run profiling jobs on many devices at once: one thread per device slot.

Rules:
- a device runs `concurrency` jobs at a time (1 unless farm.toml says more);
- a job may run on any of its `devices` (one device in "each" mode, every
  device of a profile in "pool" mode), whichever is free first;
- every job has a deadline; a job past it marks its device unhealthy (the
  target is closed to unblock it) and counts as a failed attempt;
- after a failure the device is probed (a fresh connection and `device_info`):
  if it does not answer it is marked unhealthy and takes no more jobs. The job
  is retried on a healthy eligible device while attempts are left
  (`max_attempts`), else recorded as failed with every attempt's cause. A model
  or data error is the artifact's fault: no retry;
- each measurement is written to the store from the worker thread the moment
  it finishes;
- Ctrl-C stops dispatching, closes the targets (interrupting their runs) and
  returns; what was written stays written, the rest runs next time.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.core.artifact import ArtifactRecord
from kit.core.errors import DataError, KitError, ModelError
from kit.farm.inventory import Device
from kit.farm.progress import Progress
from kit.farm.store import Key, ResultsStore
from targets.base import ProfileResult, RunSettings, Target


@dataclass
class Job:
    artifact: ArtifactRecord
    settings: RunSettings
    settings_hash: str
    devices: list[str]  # eligible devices, any one of them measures the job
    label: str
    timeout_s: float
    attempts: int = 0
    errors: list[str] = field(default_factory=list)

    def key(self, device: str) -> Key:
        return Key(self.artifact.sha256, device, self.settings_hash)


@dataclass
class Outcome:
    job: Job
    status: str  # ok | failed | cancelled
    device: str | None = None
    result: ProfileResult | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Report:
    outcomes: list[Outcome]
    unhealthy: dict[str, str]
    interrupted: bool
    wall_s: float

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


@dataclass
class _Running:
    job: Job
    device: Device
    slot: "_Slot"
    started: float
    deadline: float
    token: int


class _Slot:
    """One job at a time on one device; keeps its target connected between jobs."""

    def __init__(self, device: Device, index: int):
        self.device, self.index = device, index
        self.target: Target | None = None

    def connect(self) -> Target:
        if self.target is None:
            self.target = self.device.connect()
        return self.target

    def drop(self) -> None:
        target, self.target = self.target, None
        if target is not None:
            _close_quietly(target)


def _close_quietly(target: Target) -> None:
    try:
        target.close()
    except Exception:  # closing a lost connection may fail; the device is being given up anyway
        pass


def describe(e: BaseException) -> str:
    if isinstance(e, KitError):
        return e.message + (f" ({e.hint})" if e.hint else "")
    return f"{type(e).__name__}: {e}"


class Scheduler:
    def __init__(self, devices: list[Device], store: ResultsStore, invocation: str, *, max_attempts: int = 2,
                 probe_timeout_s: float = 30.0, progress: Progress | None = None):
        if max_attempts < 1:
            raise KitError("max_attempts must be >= 1")
        self.devices = {d.name: d for d in devices}
        self.store = store
        self.invocation = invocation
        self.max_attempts = max_attempts
        self.probe_timeout_s = probe_timeout_s
        self.progress = progress or Progress(list(self.devices), 0, enabled=False)
        self._cv = threading.Condition()
        self._pending: list[Job] = []
        self._running: dict[int, _Running] = {}
        self._outcomes: list[Outcome] = []
        self._unhealthy: dict[str, str] = {}
        self._stop = False
        self._token = 0
        self._slots: list[_Slot] = []
        self._abandoned: set[int] = set()  # slots whose stuck job the watchdog gave up

    # -- public ----------------------------------------------------------------------------------

    def run(self, jobs: list[Job]) -> Report:
        unknown = {d for j in jobs for d in j.devices} - set(self.devices)
        if unknown:
            raise KitError(f"jobs name devices outside the farm: {', '.join(sorted(unknown))}")
        t0 = time.monotonic()
        self._pending = list(jobs)
        self._slots = [_Slot(d, i) for d in self.devices.values() for i in range(d.concurrency)]
        workers = [threading.Thread(target=self._work, args=(slot,), name=f"farm-{slot.device.name}-{slot.index}",
                                    daemon=True) for slot in self._slots]
        for w in workers:
            w.start()
        interrupted = False
        try:
            with self._cv:
                while self._pending or self._running:
                    self._cv.wait(0.2)
                    self._watchdog()
                    if not any(w.is_alive() for w in workers):
                        break
        except KeyboardInterrupt:
            interrupted = True
            self._cancel()
        for slot, w in zip(self._slots, workers):
            w.join(timeout=0.1 if interrupted or id(slot) in self._abandoned else 5)
        for slot in self._slots:
            if slot.target is not None and not interrupted:
                slot.drop()
        with self._cv:
            for job in self._pending:
                self._outcomes.append(Outcome(job, "cancelled", error="not run"))
            self._pending = []
            return Report(list(self._outcomes), dict(self._unhealthy), interrupted, time.monotonic() - t0)

    # -- worker ----------------------------------------------------------------------------------

    def _work(self, slot: _Slot) -> None:
        name = slot.device.name
        while True:
            with self._cv:
                job = None
                while job is None:
                    if self._stop or name in self._unhealthy:
                        return
                    job = self._take(name)
                    if job is None and not self._may_get_work(name):
                        self.progress.state(name, "finished")
                        return
                    if job is None:
                        self._cv.wait(0.5)
                self._token += 1
                now = time.monotonic()
                running = _Running(job, slot.device, slot, now, now + job.timeout_s, self._token)
                self._running[id(slot)] = running
            self.progress.state(name, f"running {job.label}")
            self._execute(running)
            with self._cv:
                self._cv.notify_all()

    def _take(self, device: str) -> Job | None:
        for i, job in enumerate(self._pending):
            if device in job.devices:
                return self._pending.pop(i)
        return None

    def _may_get_work(self, device: str) -> bool:
        """A running job this device could inherit if its device fails."""
        return any(device in r.job.devices for r in self._running.values())

    def _execute(self, run: _Running) -> None:
        job, slot, device = run.job, run.slot, run.device
        started_wall = time.time()
        try:
            result = slot.connect().profile(Path(job.artifact.path), job.settings)
        except (ModelError, DataError) as e:
            self._finish_failure(run, describe(e), device_lost=False, retry=False, started=started_wall)
            return
        except Exception as e:  # any device or target failure; classified by probing the device
            cause = describe(e)
            slot.drop()
            if not self._current(run):
                return
            alive, why = self._probe(device)
            lost = not alive
            if lost:
                cause += f"; then the device did not answer a fresh connection: {why}"
            self._finish_failure(run, cause, device_lost=lost, retry=True, started=started_wall)
            return
        with self._cv:
            if not self._current(run):
                return  # the watchdog gave the job up; its late result is not trusted
            del self._running[id(slot)]
            job.attempts += 1
            self.store.record_ok(job.key(device.name), result, self.invocation, device.device_class,
                                 device.profile.name, started_wall, job.attempts)
            self._outcomes.append(Outcome(job, "ok", device.name, result, seconds=time.monotonic() - run.started))
        self.progress.finished(device.name, job.label, True, _latency_text(result))

    def _current(self, run: _Running) -> bool:
        with self._cv:
            live = self._running.get(id(run.slot))
            return live is not None and live.token == run.token

    def _probe(self, device: Device) -> tuple[bool, str]:
        """A fresh connection and `device_info`, within `probe_timeout_s`."""
        box: dict[str, object] = {}

        def probe() -> None:
            target = None
            try:
                target = device.connect()
                target.device_info()
                box["ok"] = True
            except Exception as e:
                box["error"] = describe(e)
            finally:
                if target is not None:
                    _close_quietly(target)

        t = threading.Thread(target=probe, daemon=True, name=f"probe-{device.name}")
        t.start()
        t.join(self.probe_timeout_s)
        if t.is_alive():
            return False, f"no answer within {self.probe_timeout_s:.0f} s"
        return bool(box.get("ok")), str(box.get("error", ""))

    # -- failures --------------------------------------------------------------------------------

    def _finish_failure(self, run: _Running, cause: str, device_lost: bool, retry: bool, started: float) -> None:
        job, device = run.job, run.device
        with self._cv:
            if not self._current(run):
                return
            del self._running[id(run.slot)]
            self._fail_locked(job, device, cause, device_lost, retry, started)
            self._cv.notify_all()

    def _fail_locked(self, job: Job, device: Device, cause: str, device_lost: bool, retry: bool,
                     started: float | None) -> None:
        job.attempts += 1
        job.errors.append(f"{device.name}: {cause}")
        self.store.record_attempt(job.key(device.name), cause, device_lost, self.invocation)
        if device_lost:
            self._mark_unhealthy(device.name, cause)
        healthy = [d for d in job.devices if d not in self._unhealthy]
        if retry and not self._stop and job.attempts < self.max_attempts and healthy:
            self._pending.insert(0, job)
            self.progress.note(f"[{device.name}] {job.label}: attempt {job.attempts} failed ({cause}); "
                               f"retrying on {' or '.join(healthy)}")
            return
        if not retry:
            why = cause
        elif not healthy:
            why = _summary(job.errors) + "; no healthy device is left for it"
        else:
            why = _summary(job.errors) + f"; gave up after {job.attempts} attempt(s)"
        self.store.record_failed(job.key(device.name), why, self.invocation, device.device_class,
                                 device.profile.name, job.settings, started, job.attempts)
        self._outcomes.append(Outcome(job, "failed", device.name, error=why))
        self.progress.finished(device.name, job.label, False, why)

    def _mark_unhealthy(self, name: str, cause: str) -> None:
        if name in self._unhealthy:
            return
        self._unhealthy[name] = cause
        self.progress.state(name, f"unhealthy: {cause}")
        # jobs no healthy device can take any more fail now, with the cause
        for job in list(self._pending):
            if all(d in self._unhealthy for d in job.devices):
                self._pending.remove(job)
                lost = ", ".join(f"{d} ({self._unhealthy[d]})" for d in job.devices)
                why = f"not run: its device(s) dropped out: {lost}"
                device = self.devices[job.devices[-1]]
                self.store.record_failed(job.key(device.name), why, self.invocation, device.device_class,
                                         device.profile.name, job.settings, None, job.attempts)
                self._outcomes.append(Outcome(job, "failed", device.name, error=why))
                self.progress.finished(device.name, job.label, False, why)

    def _watchdog(self) -> None:
        """Called with the lock held: give up jobs past their deadline and the devices that ran them."""
        now = time.monotonic()
        for slot_id, run in list(self._running.items()):
            if now < run.deadline:
                continue
            del self._running[slot_id]
            self._abandoned.add(slot_id)
            cause = f"the job took longer than its {run.job.timeout_s:.0f} s timeout"
            stuck = run.slot.target
            run.slot.target = None
            if stuck is not None:  # closing may block on a dead link: not on this thread
                threading.Thread(target=_close_quietly, args=(stuck,), daemon=True).start()
            self._fail_locked(run.job, run.device, cause, device_lost=True, retry=True, started=None)

    def _cancel(self) -> None:
        with self._cv:
            self._stop = True
            running = list(self._running.values())
            self._running.clear()
            for run in running:
                self._outcomes.append(Outcome(run.job, "cancelled", run.device.name, error="interrupted"))
            self._cv.notify_all()
        for slot in self._slots:
            stuck, slot.target = slot.target, None
            if stuck is not None:
                threading.Thread(target=_close_quietly, args=(stuck,), daemon=True).start()


def _summary(errors: list[str]) -> str:
    """Attempt errors in order, identical ones folded: "a: x (2 attempts); b: y"."""
    counts: dict[str, int] = {}
    for e in errors:
        counts[e] = counts.get(e, 0) + 1
    return "; ".join(e if n == 1 else f"{e} ({n} attempts)" for e, n in counts.items())


def _latency_text(r: ProfileResult) -> str:
    lat = r.latency
    if lat is None:
        return "no latency"
    value = lat.median_us if lat.median_us is not None else lat.mean_us
    return f"{value / 1000:.3f} ms" + (" (estimate)" if r.estimate else "")
