"""Recovery of pre-trained models with little data: does every built-in recipe ship within its budget or nothing?

For each pre-trained model, each built-in recipe (mcu, default, best) runs through `kit.compress` on a few hundred
samples; the table is read from the manifest each run writes (kit.pipeline.manifest): the original's score
(Keras, and its float32 conversion on LiteRT), every artifact's top-1 on every runtime it was checked on, whether it
shipped or why not, the weight sparsity reached and the per-epoch validation curve (min / last).

Models and their data:
  kws     MLPerf Tiny DS-CNN keyword spotter (../shared/models/mlperf-tiny/kws_ref_model). No labelled KWS features
          exist offline: inputs are MFCC features (the MLPerf Tiny KWS front end: 30 ms windows, 20 ms stride,
          40 mel bins 20-4000 Hz, 10 coefficients) of the TFLite Micro example recordings (yes, no, silence,
          noise) with random time shifts, a second word mixed in, background and white noise, each clip scaled
          to peak 1 as that front end does; labels are the original model's own predictions (teacher labels):
          the score is top-1 agreement with the original. They cover 5 of its 12 classes.
  resnet8 MLPerf Tiny ResNet-8 (CIFAR-10), teacher labels on 32x32 colour images made from real pictures (crops of
          the TFLM person images, MNIST t10k digits on random colours). Score: agreement with the original.
  vww     MLPerf Tiny MobileNetV1-0.25 visual wake words, teacher labels on 96x96 crops of the same pictures.
  user    a user-style pre-trained Keras model: depthwise-separable CNN with BatchNormalization, Dropout and a
          softmax head named `predictions`, trained here on all of scikit-learn's digits and saved as .h5; compressed
          with 400 real labelled samples, tested on the digits test split (real labels).

    python benchmarks/bench_recovery.py [--models kws,user] [--recipes mcu,default,best] [--quick] [--out DIR]

--quick: 300 samples instead of 1,000 (teacher-labelled models) and the mcu recipe only unless --recipes says.
No recipe is left out for any of these models: all four are classifiers whose int8 models run on LiteRT and TFLite
Micro, so mcu, default and best all apply. Each run's folder (manifest.json, report.md) is kept under --out.
Goal (issue 12): every recipe either ships within its budget ([convert] max_accuracy_drop) or ships nothing, on
every model; `mcu` keeps a pre-trained DS-CNN within 1 point at >= 50% sparsity.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import kit
from kit.core.tables import format_table
from kit.data import Dataset

SHARED = Path(__file__).resolve().parents[2] / "shared"
MLPERF = SHARED / "models" / "mlperf-tiny"
EXAMPLES = SHARED / "models" / "tflm-examples"
RECIPES = ("mcu", "default", "best")


# -- realistic inputs ----------------------------------------------------------------------------------------------

def _wav(path: Path) -> np.ndarray:
    import wave

    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return pcm.astype(np.float32) / 32768.0


def kws_inputs(n: int, rng: np.random.Generator) -> np.ndarray:
    """MFCC features (49x10x1) of the example recordings, shifted, scaled, mixed and noised."""
    import tensorflow as tf

    clips = [_wav(EXAMPLES / f"{w}_1000ms.wav") for w in ("yes", "no", "silence", "noise")]
    clips = [np.pad(c, (0, max(0, 16000 - len(c))))[:16000] for c in clips]
    noise = clips[3]
    audio = np.empty((n, 16000), np.float32)
    for i in range(n):
        c = clips[rng.integers(0, 3)].copy()
        if rng.random() < 0.3:  # a second word on top, quieter
            c = c + clips[rng.integers(0, 2)] * rng.uniform(0.1, 0.6)
        c = np.roll(c, int(rng.integers(-1600, 1601)))
        c = c + noise * rng.uniform(0.0, 0.5) + rng.normal(0, rng.uniform(0, 0.01), 16000)
        audio[i] = c / max(float(np.abs(c).max()), 1e-6)  # the reference front end scales every clip to peak 1
    stft = tf.signal.stft(audio, frame_length=480, frame_step=320, fft_length=512, window_fn=tf.signal.hann_window)
    mel = tf.tensordot(tf.abs(stft), tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 4000.0), 1)
    mfcc = tf.signal.mfccs_from_log_mel_spectrograms(tf.math.log(mel + 1e-6))[..., :10]
    return mfcc.numpy()[..., None].astype(np.float32)


def _pictures() -> list[np.ndarray]:
    """Grey pictures in [0, 1]: the two TFLM person images and 2,000 MNIST test digits."""
    from PIL import Image

    from kit.data import load_data

    out = [np.asarray(Image.open(EXAMPLES / f), np.float32) / 255.0 for f in ("person.bmp", "no_person.bmp")]
    digits = load_data("mnist5k", seed=0).x_test[:2000].reshape(-1, 28, 28)
    return out + [d / max(float(d.max()), 1e-6) for d in digits]


def image_inputs(n: int, size: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Colour images: random crops of the person pictures, or digits, with random foreground/background colours."""
    import tensorflow as tf

    pictures = _pictures()
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        k = 0 if rng.random() < 0.25 else 1 if rng.random() < 0.33 else int(rng.integers(2, len(pictures)))
        p = pictures[k]
        h = int(rng.integers(p.shape[0] // 2, p.shape[0] + 1))
        y0, x0 = rng.integers(0, p.shape[0] - h + 1), rng.integers(0, p.shape[1] - h + 1)
        crop = tf.image.resize(p[y0:y0 + h, x0:x0 + h, None], (size, size)).numpy()
        fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        out[i] = crop * fg + (1 - crop) * bg if k >= 2 else crop * rng.uniform(0.6, 1.2, 3)
    return np.clip(out, 0, 1) * scale


def teacher_dataset(name: str, model, x: np.ndarray, n_train: int) -> tuple[Dataset, str]:
    """x labelled by the model itself; the note says how many classes the labels cover."""
    y = model.predict(x, batch_size=256, verbose=0).argmax(-1)
    counts = np.bincount(y, minlength=model.output_shape[-1])
    note = (f"teacher labels: {np.count_nonzero(counts)} of {len(counts)} classes, the most common "
            f"{counts.max() / len(y):.0%}")
    return Dataset(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:], x[:n_train],
                   f"{len(x)} {name} inputs labelled by the original model ({n_train} train / {len(x) - n_train} test)"
                   ), note


# -- models --------------------------------------------------------------------------------------------------------

def user_model(out: Path):
    """A pre-trained DS-CNN as a user would bring it: BN after every conv, Dropout, softmax head, saved as .h5."""
    import tf_keras as keras

    from kit.data import load_data

    d = load_data("digits", seed=0)
    x_train, x_test = d.x_train.reshape(-1, 8, 8, 1), d.x_test.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same", use_bias=False)(inp)))
    for filters in (32, 64):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 1, use_bias=False)(x)))
    x = L.Dropout(0.3)(L.GlobalAveragePooling2D()(x))
    x = L.Dropout(0.2)(L.ReLU()(L.BatchNormalization()(L.Dense(64)(x))))
    model = keras.Model(inp, L.Dense(10, activation="softmax", name="predictions")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, d.y_train, epochs=40, batch_size=32, verbose=0)
    path = out / "user_dscnn.h5"
    model.save(path)
    few = Dataset("digits-400", x_train[:400], d.y_train[:400], x_test, d.y_test, x_train[:200],
                  "400 real labelled digits for training, the digits test split for testing")
    return path, few, "real labels"


def mlperf_model(key: str, n: int, rng: np.random.Generator):
    import tf_keras as keras

    path = MLPERF / {"kws": "kws_ref_model", "resnet8": "pretrainedResnet.h5", "vww": "vww_96.h5"}[key]
    model = keras.models.load_model(path, compile=False)
    if key == "kws":
        x = kws_inputs(n, rng)
    elif key == "resnet8":
        x = image_inputs(n, 32, 255.0, rng)  # its int8 model's input is 0..255 (scale 1, zero point -128)
    else:
        x = image_inputs(n, 96, 1.0, rng)  # scale 1/255: inputs in 0..1
    data, note = teacher_dataset(key, model, x, n // 2)
    return path, data, note


# -- one run, read back from its manifest --------------------------------------------------------------------------

def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def summarize(model: str, recipe: str, manifest: dict, seconds: float) -> list[list]:
    """Rows of the table for one run: one per artifact."""
    keras_acc = manifest["keras_accuracy"]
    base = {c["runtime"]: c.get("top1") for c in manifest["baseline"]["checks"]}
    kernels = manifest["layer_sparsity"].values()
    total = sum(k["params"] for k in kernels)
    sparsity = sum(k["params"] * k["sparsity"] for k in kernels) / total if total else 0.0
    val = [v for v in (manifest.get("history") or {}).get("val_accuracy", []) if v is not None]
    curve = f"{_pct(min(val))}/{_pct(val[-1])}" if val else "-"
    budget = manifest["recipe"].get("convert", {}).get("max_accuracy_drop", 1.0)
    rows = []
    for a in manifest["artifacts"]:
        scores = " ".join(f"{c['runtime']} {_pct(c.get('top1'))}" if c.get("loads") else f"{c['runtime']} fails"
                          for c in a["checks"])
        state = "shipped" if a["shipped"] else f"no: {a['reason'][:70]}"
        rows.append([model, recipe, f"{_pct(keras_acc.get('original'))} / {_pct(base.get('litert'))}",
                     _pct(keras_acc.get("compressed")), f"{sparsity:.0%}", curve, a["format"], scores, state,
                     f"{budget:g}", f"{seconds:.0f}"])
    if not manifest["artifacts"]:
        rows.append([model, recipe, _pct(keras_acc.get("original")), _pct(keras_acc.get("compressed")),
                     f"{sparsity:.0%}", curve, "-", "-", "no artifact", f"{budget:g}", f"{seconds:.0f}"])
    return rows


def goal(manifest: dict) -> str | None:
    """What breaks the issue's goal in this run, if anything."""
    budget = manifest["recipe"].get("convert", {}).get("max_accuracy_drop", 1.0)
    targets = manifest["recipe"].get("convert", {}).get("targets", ["litert"])
    base = {c["runtime"]: c.get("top1") for c in manifest["baseline"]["checks"] if c.get("problem") is None}
    original = manifest["keras_accuracy"].get("original")
    for a in manifest["artifacts"]:
        if not a["shipped"]:
            continue
        for c in a["checks"]:
            if c["runtime"] not in targets or c.get("problem") is not None:
                continue
            ref = base.get(c["runtime"], original)
            ref = original if ref is None else ref
            if c.get("top1") is not None and ref is not None and 100 * (ref - c["top1"]) > budget + 1e-6:
                return f"{a['format']} shipped {100 * (ref - c['top1']):.1f} points below the original on {c['runtime']}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="kws,resnet8,vww,user", help="comma-separated: kws, resnet8, vww, user")
    ap.add_argument("--recipes", default=None,
                    help="comma-separated built-in recipes or .toml paths (default: mcu,default,best)")
    ap.add_argument("--samples", type=int, default=None, help="teacher-labelled inputs per model, half for training")
    ap.add_argument("--quick", action="store_true", help="300 samples, mcu only (unless --recipes/--samples)")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    recipes = [r.strip() for r in (args.recipes or ("mcu" if args.quick else ",".join(RECIPES))).split(",")]
    n = args.samples or (300 if args.quick else 1000)
    unknown = set(models) - {"kws", "resnet8", "vww", "user"}
    if unknown:
        ap.error(f"unknown models: {', '.join(sorted(unknown))}")
    if set(models) & {"kws", "resnet8", "vww"} and not MLPERF.is_dir():
        print(f"{MLPERF} is absent: the MLPerf Tiny models are left out", file=sys.stderr)
        models = [m for m in models if m == "user"]
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, notes, misses = [], [], []
    for m in models:
        path, data, note = user_model(out) if m == "user" else mlperf_model(m, n, rng)
        notes.append(f"{m}: {data.description}; {note}")
        for r in recipes:
            t0 = time.perf_counter()
            result = kit.compress(str(path), recipe=r, data=data, out=out / m / Path(r).stem, model_name=m,
                                  log=lambda *a: None)
            manifest = json.loads(result.manifest_path.read_text())
            rows += summarize(m, Path(r).stem, manifest, time.perf_counter() - t0)
            if (problem := goal(manifest)) is not None:
                misses.append(f"{m}/{r}: {problem}")
            print(f"{m}/{Path(r).stem}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(format_table(["model", "recipe", "original keras/litert", "compressed keras", "sparsity", "val min/last",
                        "artifact", "top-1 per runtime", "shipped", "budget", "s"], rows))
    print()
    print("scores: top-1 % on the test split (teacher labels: agreement with the original model's predictions)")
    for line in notes:
        print(line)
    print(f"runs kept in {out}")
    print("goal (ships within budget or nothing): " + ("met on every run" if not misses else "; ".join(misses)))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
