"""Build a `kit firmware` project with its own Makefile against a TensorFlow Lite Micro source tree.

The project's Makefile compiles only what the model needs: TFLM's interpreter core and the kernels of
its ops (reference or CMSIS-NN), never the whole library, with a precompiled header for TFLM's large
generated schema. TFLM objects depend only on the tree and the compiler flags, so the kit keeps them in
a cache shared by every project (`~/.cache/prunekit/tflm`), keyed by tree, target and kernels; the first
build of a configuration takes a few minutes, later ones link in seconds. The tree is only read: a
read-only checkout (such as `../shared/third_party/tflite-micro`) works as it is.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from firmware_tools.boards import QEMU_BOARDS, TARGETS, core_of
from kit.core.errors import KitError
from kit.core.paths import shared_dir, user_cache

#: the environment variable naming the TFLM tree when `--tflm` is not given
TFLM_ENV = "KIT_TFLM_ROOT"
_RESOLVER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
_KERNELS_DIR = "tensorflow/lite/micro/kernels"
_DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
#: the interpreter and what it needs, as globs relative to the tree (missing ones are skipped)
_CORE_GLOBS = (
    "tensorflow/lite/micro/*.cc", "tensorflow/lite/micro/arena_allocator/*.cc",
    "tensorflow/lite/micro/memory_planner/*.cc", "tensorflow/lite/micro/tflite_bridge/*.cc",
    "tensorflow/lite/kernels/kernel_util.cc", "tensorflow/lite/kernels/internal/*.cc",
    "tensorflow/lite/kernels/internal/reference/portable_tensor_utils.cc",
    "tensorflow/lite/core/api/*.cc", "tensorflow/lite/core/c/common.cc",
    "tensorflow/compiler/mlir/lite/schema/schema_utils.cc", "tensorflow/compiler/mlir/lite/core/api/error_reporter.cc",
    f"{_KERNELS_DIR}/kernel_util.cc", f"{_KERNELS_DIR}/micro_tensor_utils.cc",
)
#: test scaffolding in the core folders that firmware never calls
_NOT_FIRMWARE = re.compile(r"(_test|test_helpers?|test_helper_custom_ops|mock_micro_graph|fake_micro_context"
                           r"|recording_\w+|micro_profiler)\.cc$")
#: kernels whose code lives in files not named after them
_KERNEL_EXTRA = {"unidirectional_sequence_lstm": ("lstm_eval", "lstm_eval_common")}
BUILD_TIMEOUT_S = 3600
#: the optimisation level builds use unless told otherwise (part of the object cache's key)
DEFAULT_OPT = "-O2"


@dataclass(frozen=True)
class Sources:
    """Files of a TFLM tree a model needs, relative to the tree."""

    core: tuple[str, ...]
    kernels: dict[str, tuple[str, ...]]  # "reference" / "cmsis_nn" -> kernel sources
    cmsis_nn_c: tuple[str, ...]  # the CMSIS-NN library's C sources


@dataclass(frozen=True)
class BuildResult:
    target: str
    kernels: str
    image: Path  # the linked ELF (board) or executable (host)
    seconds: float
    log: str


def default_tree() -> Path | None:
    """The TFLM tree from `KIT_TFLM_ROOT`, else the pinned one in `../shared/third_party`."""
    if os.environ.get(TFLM_ENV):
        return Path(os.environ[TFLM_ENV])
    shared = shared_dir()
    tree = shared / "third_party" / "tflite-micro" if shared else None
    return tree if tree and tree.is_dir() else None


def check_tree(tree: Path | None) -> Path:
    """The tree, resolved, or a KitError that says how to get one."""
    if tree is None:
        raise KitError("no TensorFlow Lite Micro source tree to build against",
                       f"give --tflm DIR or set {TFLM_ENV} (a checkout of github.com/tensorflow/tflite-micro with "
                       "its downloads in tensorflow/lite/micro/tools/make/downloads)")
    tree = Path(tree).resolve()
    if any(c.isspace() for c in str(tree)):
        raise KitError(f"{tree} contains white space, which make cannot handle in paths",
                       "copy or link the tree to a path without spaces")
    for need in (_RESOLVER, f"{_DOWNLOADS}/flatbuffers/include"):
        if not (tree / need).exists():
            raise KitError(f"{tree} is not a TensorFlow Lite Micro tree with its downloads: {need} is missing",
                           "run `make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads` in it once")
    return tree


def select_sources(tree: Path, resolver_methods: list[str]) -> Sources:
    """The core plus the kernels behind `MicroMutableOpResolver::<method>()` for each method."""
    core = sorted({p for g in _CORE_GLOBS for p in _glob(tree, g) if not _NOT_FIRMWARE.search(p)})
    registrations = _registrations(tree, resolver_methods)
    kernels = {"reference": _kernel_sources(tree, registrations, optimized=None),
               "cmsis_nn": _kernel_sources(tree, registrations, optimized="cmsis_nn")}
    cmsis = tree / _DOWNLOADS / "cmsis_nn" / "Source"
    # integer kernels only, as TFLM's own CMSIS-NN build (ARM_NN_ENABLE_F16/F32=0)
    cmsis_c = tuple(sorted(str(p.relative_to(tree)) for p in cmsis.rglob("*.c")
                           if not re.search(r"(_f16|_f32|/arm_nntables_flt)\.c$", str(p)))) if cmsis.is_dir() else ()
    return Sources(tuple(core), kernels, cmsis_c)


def _glob(tree: Path, pattern: str) -> list[str]:
    return [str(p.relative_to(tree)) for p in tree.glob(pattern) if p.is_file()]


def _registrations(tree: Path, methods: list[str]) -> dict[str, list[str]]:
    """method -> the `Register_*` functions its default argument or body calls, read from the tree's header."""
    text = (tree / _RESOLVER).read_text()
    found = {}
    for method in methods:
        m = re.search(rf"TfLiteStatus {re.escape(method)}\((.*?)\n  }}", text, re.DOTALL)
        if not m:
            raise KitError(f"this TensorFlow Lite Micro tree has no MicroMutableOpResolver::{method}()",
                           "use a newer TFLM tree, or a model without that op")
        found[method] = sorted(set(re.findall(r"\bRegister_(\w+)\(", m.group(1))))
    return found


def _kernel_sources(tree: Path, registrations: dict[str, list[str]], optimized: str | None) -> tuple[str, ...]:
    kdir = tree / _KERNELS_DIR
    candidates = sorted(p for p in kdir.glob("*.cc") if "test" not in p.name)
    texts = {p: p.read_text(errors="replace") for p in candidates}
    chosen: set[str] = set()
    for method, names in registrations.items():
        for name in names:
            defining = [p for p, t in texts.items() if re.search(rf"TFLMRegistration\s+Register_{name}\s*\(", t)]
            if not defining:
                raise KitError(f"no kernel source in {kdir} defines Register_{name}() (for {method})")
            for p in defining:
                stem = p.stem
                special = kdir / optimized / p.name if optimized else None
                chosen.add(str((special if special and special.is_file() else p).relative_to(tree)))
                siblings = [s for s in candidates if s.stem.startswith(stem + "_")]
                siblings += [kdir / f"{e}.cc" for e in _KERNEL_EXTRA.get(stem, ())]
                chosen.update(str(s.relative_to(tree)) for s in siblings if s.is_file())
    return tuple(sorted(chosen))


def render_sources_mk(sources: Sources) -> str:
    def block(name: str, files: tuple[str, ...]) -> str:
        return f"{name} := \\\n" + "".join(f"  {f} \\\n" for f in files) + "\n"

    return ("# TensorFlow Lite Micro sources this model needs, relative to $(TFLM). Generated by `kit firmware`.\n"
            + block("TFLM_CORE", sources.core) + block("KERNELS_reference", sources.kernels["reference"])
            + block("KERNELS_cmsis_nn", sources.kernels["cmsis_nn"]) + block("CMSIS_NN_C", sources.cmsis_nn_c))


def render_makefile(tree: Path | None, model_name: str) -> str:
    """The project's Makefile: `make TARGET=… KERNELS=… TFLM=…`; every QEMU board is one `ifeq` block."""
    boards = []
    for name, b in QEMU_BOARDS.items():
        boards.append(f"""else ifeq ($(TARGET),{name})
  # {b.what}
  CPU := {' '.join(b.core.cpu_flags)}
  BOARD_DEFINES := -DKIT_UART_BASE=0x{b.uart_base:08x}u -DKIT_UART_RX_IRQ={b.uart_rx_irq} -DKIT_SYSCLK_HZ={b.sysclk_hz}u
  LDSCRIPT := src/bare/{name}.ld
""")
    default_tree = str(tree) if tree else "../tflite-micro"
    return f"""# Firmware for {model_name} against a TensorFlow Lite Micro source tree. Generated by `kit firmware`.
#
#   make                                      host executable, reference kernels (protocol on stdin/stdout)
#   make TARGET=mps2-an386 KERNELS=cmsis_nn   Cortex-M4F image for the MPS2 AN386 (QEMU: -M mps2-an386)
#   make TFLM=/path/to/tflite-micro           another tree (its downloads must be in place)
#   make TFLM_OBJ=/shared/cache/dir           keep TFLM's objects elsewhere (they depend only on tree and flags)
#
# Targets: {' '.join(TARGETS)}. Kernels: reference, cmsis_nn (Cortex-M only).
TFLM ?= {default_tree}
TARGET ?= host
KERNELS ?= reference
OPT ?= -O2
BUILD ?= build/$(TARGET)-$(KERNELS)
TFLM_OBJ ?= $(BUILD)/tflm
# V=1 prints every compiler command
Q := $(if $(V),,@)

include tflm_sources.mk

DL := $(TFLM)/{_DOWNLOADS}
INCLUDES := -Isrc -I$(TFLM) -I$(DL)/flatbuffers/include -I$(DL)/gemmlowp -I$(DL)/ruy
DEFINES := -DTF_LITE_STATIC_MEMORY -DTF_LITE_STRIP_ERROR_STRINGS

ifeq ($(TARGET),host)
  CROSS :=
  CPU :=
  PLATFORM := src/host/platform_host.cc
  LDFLAGS := -Wl,--gc-sections
  IMAGE := $(BUILD)/firmware
{''.join(boards)}else
  $(error unknown TARGET=$(TARGET); use one of: {' '.join(TARGETS)})
endif

ifneq ($(TARGET),host)
  CROSS := arm-none-eabi-
  PLATFORM := src/bare/startup.c src/bare/platform_cmsdk.c src/bare/syscalls.c src/bare/cxx_support.cc
  LDFLAGS := -T $(LDSCRIPT) -nostartfiles --specs=nano.specs -Wl,--gc-sections -Wl,-Map=$(BUILD)/firmware.map
  IMAGE := $(BUILD)/firmware.elf
endif

ifeq ($(KERNELS),cmsis_nn)
  ifeq ($(TARGET),host)
    $(error KERNELS=cmsis_nn needs a Cortex-M TARGET)
  endif
  KERNEL_SRCS := $(KERNELS_cmsis_nn)
  LIB_C := $(CMSIS_NN_C)
  DEFINES += -DCMSIS_NN -DARM_NN_ENABLE_F16=0 -DARM_NN_ENABLE_F32=0
  INCLUDES += -I$(DL)/cmsis_nn -I$(DL)/cmsis_nn/Include -I$(DL)/cmsis/CMSIS/Core/Include
else ifeq ($(KERNELS),reference)
  KERNEL_SRCS := $(KERNELS_reference)
  LIB_C :=
else
  $(error unknown KERNELS=$(KERNELS); use reference or cmsis_nn)
endif

CC := $(CROSS)gcc
CXX := $(CROSS)g++
COMMON := $(CPU) $(OPT) $(DEFINES) $(INCLUDES) -ffunction-sections -fdata-sections
CFLAGS := -std=c11 $(COMMON)
CXXFLAGS := -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics -fno-use-cxa-atexit $(COMMON)

# TFLM's generated schema header is most of every translation unit: precompile it once
PCH := $(TFLM_OBJ)/pch/tflm_prefix.h
TFLM_OBJS := $(patsubst %,$(TFLM_OBJ)/%.o,$(TFLM_CORE) $(KERNEL_SRCS) $(LIB_C))
APP_SRCS := src/kit_runner.cc src/model_data.cc src/op_resolver.cc src/th_protocol.c $(PLATFORM)
APP_OBJS := $(patsubst %,$(BUILD)/%.o,$(APP_SRCS))

all: $(IMAGE)

$(IMAGE): $(TFLM_OBJS) $(APP_OBJS) $(LDSCRIPT)
\t@echo "LINK $@"
\t$(Q)$(CXX) $(CPU) $(TFLM_OBJS) $(APP_OBJS) $(LDFLAGS) -o $@

# order-only: the cached header is the same for every project (it is part of the cache key), so a newer
# project copy must not rebuild the shared objects
$(PCH): | src/tflm_prefix.h
\t@mkdir -p $(@D)
\t$(Q)cp src/tflm_prefix.h $@

$(PCH).gch: $(PCH)
\t@echo "PCH $@"
\t$(Q)$(CXX) $(CXXFLAGS) -x c++-header $< -o $@

$(TFLM_OBJ)/%.cc.o: $(TFLM)/%.cc $(PCH).gch
\t@mkdir -p $(@D)
\t@echo "CXX $<"
\t$(Q)$(CXX) $(CXXFLAGS) -MMD -MP -include $(PCH) -c $< -o $@

$(TFLM_OBJ)/%.c.o: $(TFLM)/%.c
\t@mkdir -p $(@D)
\t@echo "CC $<"
\t$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# board support: the only files that see the board's addresses (TFLM's objects stay board-independent)
$(BUILD)/src/bare/%.c.o: src/bare/%.c
\t@mkdir -p $(@D)
\t@echo "CC $<"
\t$(Q)$(CC) $(CFLAGS) $(BOARD_DEFINES) -MMD -MP -c $< -o $@

$(BUILD)/src/bare/%.cc.o: src/bare/%.cc
\t@mkdir -p $(@D)
\t@echo "CXX $<"
\t$(Q)$(CXX) $(CXXFLAGS) $(BOARD_DEFINES) -MMD -MP -c $< -o $@

$(BUILD)/%.cc.o: %.cc $(PCH).gch
\t@mkdir -p $(@D)
\t@echo "CXX $<"
\t$(Q)$(CXX) $(CXXFLAGS) -MMD -MP -include $(PCH) -c $< -o $@

$(BUILD)/%.c.o: %.c
\t@mkdir -p $(@D)
\t@echo "CC $<"
\t$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

clean:
\trm -rf $(BUILD)

.PHONY: all clean
-include $(TFLM_OBJS:.o=.d) $(APP_OBJS:.o=.d)
"""


PREFIX_HEADER = """// Headers nearly every TFLM source includes, precompiled once per build. Generated by `kit firmware`.
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/kernels/internal/common.h"
"""


def cache_dir(tree: Path, target: str, kernels: str, opt: str) -> Path:
    """Where TFLM objects for this tree and configuration live, shared by all projects."""
    # the flags objects are compiled with (not the echo lines or link rules): a change makes a new cache
    rules = "\n".join(line for line in render_makefile(tree, "").splitlines()
                      if re.match(r"\s*(CPU|DEFINES|INCLUDES|COMMON|CFLAGS|CXXFLAGS)\b", line))
    rules += PREFIX_HEADER
    key = hashlib.sha256(f"{tree}\0{target}\0{kernels}\0{opt}\0{_toolchain_version(target)}\0{rules}".encode())
    key = key.hexdigest()[:16]
    return user_cache("tflm", f"{target}-{kernels}-{key}")


def _toolchain_version(target: str) -> str:
    cxx = "g++" if target == "host" else "arm-none-eabi-g++"
    path = shutil.which(cxx)
    if path is None:
        return "missing"
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def check_toolchain(target: str) -> None:
    need = ["make", "g++" if target == "host" else "arm-none-eabi-g++"]
    missing = [t for t in need if shutil.which(t) is None]
    if missing:
        raise KitError(f"cannot build for {target}: {', '.join(missing)} not found",
                       "install make and, for Cortex-M, the Debian packages gcc-arm-none-eabi "
                       "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib")


def build(project: Path, target: str = "host", kernels: str = "reference", tree: Path | None = None,
          jobs: int | None = None, opt: str = DEFAULT_OPT, timeout_s: float = BUILD_TIMEOUT_S) -> BuildResult:
    """Run the project's Makefile; TFLM objects go to the shared cache. Raises KitError with the compiler's words."""
    import time

    if target not in TARGETS:
        raise KitError(f"unknown firmware target {target!r}", f"use one of {', '.join(TARGETS)}")
    core = core_of(target)
    if kernels not in core.kernels:
        raise KitError(f"kernels {kernels!r} are not available for {target}", f"use one of {', '.join(core.kernels)}")
    project = Path(project)
    if not (project / "Makefile").is_file():
        raise KitError(f"{project} has no Makefile", "generate the project with `kit firmware MODEL -o DIR` first")
    tree = check_tree(tree or default_tree())
    check_toolchain(target)
    objects = cache_dir(tree, target, kernels, opt)
    objects.mkdir(parents=True, exist_ok=True)
    cmd = ["make", "-C", str(project), f"-j{jobs or os.cpu_count() or 1}", f"TARGET={target}", f"KERNELS={kernels}",
           f"TFLM={tree}", f"TFLM_OBJ={objects}", f"OPT={opt}"]
    start = time.monotonic()
    try:
        with (objects / ".lock").open("w") as lock:  # two builds at once must not write the same objects
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise KitError(f"the firmware build for {target} did not finish in {timeout_s:.0f} s") from None
    log = done.stdout + done.stderr
    if done.returncode != 0:
        errors = [line for line in log.splitlines()
                  if re.search(r"\berror:|undefined reference|\*\*\*", line)][:12]
        raise KitError(f"the firmware build for {target} ({kernels} kernels) failed:\n  " + "\n  ".join(errors or log.splitlines()[-12:]),
                       f"the full log: make -C {project} TARGET={target} KERNELS={kernels} TFLM={tree}")
    image = project / "build" / f"{target}-{kernels}" / ("firmware" if target == "host" else "firmware.elf")
    return BuildResult(target, kernels, image, time.monotonic() - start, log)
