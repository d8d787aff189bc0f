"""`qemu://mps2-an386?kernels=cmsis_nn`: a Cortex-M board emulated by QEMU, driven like a real serial board.

Deploying builds the `kit firmware` project for the model (TFLite Micro, the board's startup code, linker
script and UART driver) with the Makefile against a TFLM tree, boots the ELF in `qemu-system-arm` with the
UART on a loopback TCP port and then talks the MLPerf Tiny protocol through the serial target's own code.
Outputs are the real firmware's; latency is the emulated instruction clock under `-icount shift=0`
(instructions per inference, exact and repeatable), never the host's wall time; flash and RAM come from
the linked image.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_tools.boards import QEMU_BOARDS, qemu_board
from firmware_tools.build import DEFAULT_OPT, build, cache_dir, check_tree, default_tree
from firmware_tools.compress import METHODS
from firmware_tools.image import read_image
from firmware_tools.predict import (
    cached_calibration,
    calibrate,
    predict,
    reference_for,
    store_calibration,
)
from firmware_tools.project import generate_project
from firmware_tools.qemu import CLOCK_LABEL, INSTRUCTIONS_PER_US, boot
from kit.core.errors import KitError, TargetError
from kit.core.paths import shared_dir
from targets.base import Deployment, DeviceInfo, ProfileResult, RunSettings
from targets.options import option_names, parse_options
from targets.profiles import DeviceProfile
from targets.serial import SerialTarget
from targets.uri import TargetURI


@dataclass
class QemuOptions:
    """`?key=value` in the URI or `--option key=value`."""

    #: reference or cmsis_nn
    kernels: str = "reference"
    #: TensorFlow Lite Micro source tree (default: KIT_TFLM_ROOT, else the shared pinned tree)
    tflm: str | None = None
    #: per-tensor compression of the flashed model: none, or every method `kit firmware` knows
    compress: str = "none"
    #: also predict latency and energy on the real board of this core, calibrated on a published measurement
    #: (firmware_tools/predict.py; the first call on a build configuration runs the reference model once)
    predict: bool = False


class QemuTarget(SerialTarget):
    schemes = ("qemu",)

    def __init__(self, uri: TargetURI, profile: DeviceProfile | None = None, **options: Any):
        board = uri.host or uri.path.strip("/")
        if not board:
            raise TargetError(f"{uri.raw} names no board", f"e.g. qemu://mps2-an386; boards: {', '.join(QEMU_BOARDS)}")
        try:
            self.board = qemu_board(board)
        except KitError as e:
            raise TargetError(e.message, e.hint) from None
        own = set(option_names(QemuOptions))
        unknown = sorted(set(uri.query) - own)
        if unknown:
            raise TargetError(f"unknown option(s) {', '.join(unknown)} in {uri.raw}",
                              f"qemu:// URIs take {', '.join(sorted(own))}; serial options go in --option")
        merged = {**uri.query, **options}
        self.qemu = parse_options(QemuOptions, {k: v for k, v in merged.items() if k in own}, "qemu")
        if self.qemu.compress not in ("none", "auto"):
            raise TargetError(f"compress={self.qemu.compress} is not none or auto", "none flashes the model as it is")
        if self.qemu.kernels not in self.board.core.kernels:
            raise TargetError(f"kernels={self.qemu.kernels} is not available for {board}",
                              f"use one of {', '.join(self.board.core.kernels)}")
        serial_uri = TargetURI(raw=uri.raw.split("?", 1)[0], scheme="socket")
        serial_options = {k: v for k, v in options.items() if k not in own}
        # the firmware's command buffer takes 120-byte `db` chunks: a quarter of the round trips of 32
        serial_options.setdefault("chunk_bytes", 120)
        super().__init__(serial_uri, profile, **serial_options)
        self.uri = uri
        self._process = None
        self._work: Path | None = None
        self._image = None

    def device_info(self) -> DeviceInfo:
        return DeviceInfo(name=f"QEMU {self.board.machine}", cpu=self.board.what, os="bare metal",
                          runtime="tflite-micro", extra={"emulated": "qemu-system-arm", "latency": CLOCK_LABEL})

    def health(self) -> dict[str, Any]:
        from firmware_tools.build import check_toolchain, check_tree, default_tree
        from firmware_tools.qemu import qemu_binary

        try:
            qemu_binary()
            check_toolchain(self.board.machine)
            check_tree(Path(self.qemu.tflm) if self.qemu.tflm else default_tree())
        except KitError as e:
            return {"reachable": False, "error": f"{e.message} ({e.hint})" if e.hint else e.message}
        return {"reachable": True, "runtime": "tflite-micro", "runtime_version": None}

    def deploy(self, artifact: Path) -> Deployment:
        if not artifact.is_file():
            raise TargetError(f"model file {artifact} does not exist")
        self.cleanup(None)
        self._work = Path(tempfile.mkdtemp(prefix="kit-qemu-"))
        methods = () if self.qemu.compress == "none" else METHODS
        project = generate_project(artifact, self._work / "firmware", methods=methods, tflm=self.qemu.tflm)
        built = build(project.out_dir, self.board.machine, self.qemu.kernels,
                      Path(self.qemu.tflm) if self.qemu.tflm else None)
        self._image = read_image(built.image)
        self._process = boot(built.image, self.board)
        self.url = self._process.url
        if project.compression and project.compression.compressed:
            from firmware_tools.protocol import model_id

            self.board_model = model_id(artifact.stem, project.compression.model)
        deployment = super().deploy(artifact)
        deployment.state["notes"].insert(0, f"firmware built for {self.board.machine} ({self.board.what}, "
                                            f"{self.qemu.kernels} kernels) in {built.seconds:.0f} s and booted in QEMU")
        deployment.state["image"] = self._image
        return deployment

    def collect(self, deployment: Deployment, raw: dict[str, Any], settings: RunSettings) -> ProfileResult:
        result = super().collect(deployment, raw, settings)
        result.estimate = True
        result.device = self.device_info()
        image = deployment.state["image"]
        result.device.extra["image"] = image.as_dict()
        if result.latency is not None:
            result.device.extra["instructions_per_inference"] = round(result.latency.median_us * INSTRUCTIONS_PER_US)
        result.notes.insert(0, f"latency: {CLOCK_LABEL}; the microseconds are virtual time, i.e. instructions "
                               f"/ {INSTRUCTIONS_PER_US}, not a chip's wall time")
        if self.qemu.predict and result.latency is not None:
            self._predict(result)
        result.notes.append(f"image: flash {image.flash_bytes:,} B (model {image.model_bytes:,}, code "
                            f"{image.code_bytes:,}); RAM {image.ram_bytes:,} B (arena {image.arena_bytes:,}, stack "
                            f"{image.stack_bytes:,}, static {image.static_bytes:,}), from the linked ELF")
        return result

    def _predict(self, result: ProfileResult) -> None:
        """Add the calibrated NUCLEO-style prediction, or a note saying why there is none."""
        reference = reference_for(self.board.machine)
        if reference is None:
            result.notes.append(f"no prediction: no published calibration point for a {self.board.what} board")
            return
        tree = check_tree(Path(self.qemu.tflm) if self.qemu.tflm else default_tree())
        key = cache_dir(tree, self.board.machine, self.qemu.kernels, DEFAULT_OPT).name
        instructions = cached_calibration(key)
        if instructions is None:
            shared = shared_dir()
            model = shared / "models" / "mlperf-tiny" / reference.model if shared else None
            if model is None or not model.is_file():
                result.notes.append(f"no prediction: the calibration model {reference.model} is not available")
                return
            probe = QemuTarget(TargetURI(raw=f"qemu://{self.board.machine}", scheme="qemu", host=self.board.machine),
                               kernels=self.qemu.kernels, tflm=self.qemu.tflm)
            try:
                measured = probe.profile(model, RunSettings(warmup=0, runs=1, timeout_s=1800))
            finally:
                probe.close()
            instructions = int(measured.device.extra["instructions_per_inference"])
            store_calibration(key, instructions)
        cal = calibrate(reference, instructions, f"{self.board.machine}, {self.qemu.kernels} kernels, {DEFAULT_OPT}")
        p = predict(result.device.extra["instructions_per_inference"], cal)
        result.device.extra["predicted"] = {"board": reference.board, **p.as_dict()}
        result.notes.append(f"predicted on {reference.board}: {p.latency_ms:.2f} ms, {p.energy_uj:.0f} uJ per "
                            f"inference ({p.method})")

    def outputs(self, deployment: Deployment, inputs: list[bytes], timeout_s: float = 120.0) -> list[list[float]]:
        """Each input through the deployed firmware (`db load`, `infer 1 0`): the dequantized outputs it prints."""
        def run(link) -> list[list[float]]:
            results = []
            for data in inputs:
                if link.load("db", data, self.chunk_bytes, "m-load-done") is None:
                    raise TargetError(f"the firmware on {self.uri.raw} does not know `db`")
                results.append(list(self._infer(link, 1, 0, timeout_s).results))
            return results
        return self._call(run)

    def cleanup(self, deployment: Deployment | None) -> None:
        super().close()
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def close(self) -> None:
        self.cleanup(None)
