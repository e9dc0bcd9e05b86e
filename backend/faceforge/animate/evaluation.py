"""``faceforge eval animate``: S2D-Dec against PCA fitting (Table 1) and generated motions judged by
an expression classifier (Table 3), on FaceForge's dataset.

- **S2D-Dec**: mean per-vertex error (mm) of dense displacements decoded from the 68 landmark
  displacements, on the held-out (test) identities' static expressions, and on expressions held
  out of training (every fourth static expression; clip frames are left out of that training
  because clips mix expressions). Baseline: PCA of the training displacements fitted to the
  landmark rows (ridge least squares, 40 components).
- **Motions**: a one-layer LSTM classifier trained on the training identities' real clips;
  its accuracy on the test identities' real clips (``gt``), on Motion3DGAN's and on the LSTM
  generator baseline's motions (as many per label as the test clips, at least 10), and the
  Fréchet distance between the classifier features of generated and real test motions.
- **Amplitude and locality** (:func:`motion_amplitudes`): per label, the generated motions' apex
  (largest landmark displacement) against the median of the real test clips', and how much the
  eye region moves against the mouth region at the apex; in millimetres on the mean test face.
"""

from __future__ import annotations

import time

import numpy as np

from faceforge.progress import ProgressCallback, report

__all__ = [
    "STAGES",
    "amplitude_table",
    "evaluate_animate",
    "format_table",
    "motion_amplitudes",
    "take_amplitude_table",
    "take_amplitudes",
]

#: iBUG landmark regions of the locality check: brows and eyes, and the mouth.
EYE_REGION = np.r_[17:27, 36:48]
MOUTH_REGION = np.r_[48:68]


def _apex(motion: np.ndarray, eye: np.ndarray, mouth: np.ndarray) -> tuple[float, float, float]:
    """``motion (T, P, 3)`` displacements from neutral (landmarks or vertices) -> the peak (largest
    displacement over all frames) and the mean displacement of the points ``eye`` and ``mouth`` at
    the apex frame (the frame of largest mean displacement)."""
    magnitude = np.linalg.norm(motion, axis=2)  # (T, P)
    at_apex = magnitude[int(np.argmax(magnitude.mean(axis=1)))]
    return float(magnitude.max()), float(at_apex[eye].mean()), float(at_apex[mouth].mean())


def _compare(real: list, ours: list, name: str) -> dict:
    """Medians of :func:`_apex` rows of real motions and of ``name`` ("generated", "take")."""
    real, ours = np.asarray(real), np.asarray(ours)
    real_peak, our_peak = np.median(real[:, 0]), np.median(ours[:, 0])
    return {
        "real_peak_mm": 1e3 * float(real_peak),
        f"{name}_peak_mm": 1e3 * float(our_peak),
        "peak_ratio": float(our_peak / max(real_peak, 1e-12)),
        "real_eye_to_mouth": float(np.median(real[:, 1] / np.maximum(real[:, 2], 1e-12))),
        f"{name}_eye_to_mouth": float(np.median(ours[:, 1] / np.maximum(ours[:, 2], 1e-12))),
    }


def motion_amplitudes(
    real: np.ndarray, real_labels: list[str], generated: dict[str, np.ndarray], scale: float
) -> dict[str, dict]:
    """Per label: are generated motions as large and as local as the real ones?

    Args:
        real: ``(N, 30, 68, 3)`` real clips' normalized displacement curves (``gan.motion_curves``).
        real_labels: the label of each.
        generated: label -> ``(n, 30, 68, 3)`` generated curves (normalized units, several seeds).
        scale: Frobenius norm of the centred neutral landmarks of the face to report on (metres).

    Returns:
        label -> ``real_peak_mm`` and ``generated_peak_mm`` (medians), ``peak_ratio`` (generated /
        real), ``real_eye_to_mouth`` and ``generated_eye_to_mouth`` (medians of the eye-region to
        mouth-region motion ratio at the apex).
    """
    labels = np.asarray(real_labels)
    out = {}
    for label, curves in generated.items():
        real_apex = [_apex(c * scale, EYE_REGION, MOUTH_REGION) for c in real[labels == label]]
        ours = [_apex(c * scale, EYE_REGION, MOUTH_REGION) for c in curves]
        out[label] = _compare(real_apex, ours, "generated")
    return out

# The evaluation's stages, in order (``stage_seconds`` in the result times each one).
STAGES = ("s2d_identity", "s2d_expression", "classifier", "generators", "accuracy_fid")


class _StageClock:
    """Progress at each stage boundary, and the seconds of the stage just ended."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress, self.seconds, self._last = progress, {}, time.perf_counter()

    def __call__(self, done: int, message: str) -> None:
        now = time.perf_counter()
        if done:
            self.seconds[STAGES[done - 1]] = round(now - self._last, 1)
        self._last = now
        report(self.progress, done, len(STAGES), message)


def _s2d_held_out_identities(dataset, train: np.ndarray, test: np.ndarray, config) -> dict:  # noqa: ANN001
    """S2D-Dec and PCA fitting trained on the training identities, scored on the test identities."""
    from faceforge.animate import dense

    landmarks = np.asarray(dataset.landmarks["ibug68"])
    s2d, _ = dense.train_s2d(dataset, train, config)
    _, train_dense = dense.training_pairs(dataset, train, config.clip_frames)
    pca = dense.PCABaseline.fit(train_dense, landmarks, 40)
    return {"s2d": dense.evaluate(s2d, dataset, test), "pca": dense.evaluate(pca, dataset, test)}


def _s2d_held_out_expressions(dataset, train: np.ndarray, test: np.ndarray, config) -> dict:  # noqa: ANN001
    """Both decoders trained without every fourth static expression (and without clip frames, which
    mix expressions), scored on those expressions of the test identities."""
    from faceforge.animate import dense

    landmarks = np.asarray(dataset.landmarks["ibug68"])
    static = np.arange(1, dataset.n_expressions)
    held = static[::4]
    kept = np.setdiff1d(static, held)
    no_clips = type(config)(**{**config.__dict__, "clip_frames": 0})
    s2d, _ = dense.train_s2d(dataset, train, no_clips, expressions=kept)
    _, kept_dense = dense.training_pairs(dataset, train, 0, kept)
    pca = dense.PCABaseline.fit(kept_dense, landmarks, 40)
    return {
        "s2d": dense.evaluate(s2d, dataset, test, held),
        "pca": dense.evaluate(pca, dataset, test, held),
        "held_out": [dataset.expression_names[int(e)] for e in held],
    }


def _motions(dataset, train, test, small: bool, seed: int, stage: _StageClock) -> dict:  # noqa: ANN001
    """The classifier on real clips, both generators, and their accuracy and FID (stages 2-4)."""
    from faceforge.animate import gan

    stage(2, "expression classifier on real clips")
    curves, labels, identities = gan.landmark_curves(dataset)
    motion = gan.motion_curves(curves)
    names = sorted(set(labels))
    label_ids = np.array([names.index(lab) for lab in labels])
    is_train, is_test = np.isin(identities, train), np.isin(identities, test)
    epochs = 15 if small else 60
    classifier = gan.train_classifier(motion[is_train], label_ids[is_train], len(names), epochs, seed)
    accuracy = {"gt": gan.classifier_accuracy(classifier, motion[is_test], label_ids[is_test])}

    stage(3, "Motion3DGAN and the LSTM baseline")
    gan_config = gan.Motion3DGANConfig.tiny(seed) if small else gan.Motion3DGANConfig(seed=seed)
    train_curves = [c for c, k in zip(curves, is_train, strict=True) if k]
    train_labels = [lab for lab, k in zip(labels, is_train, strict=True) if k]
    motion3dgan, _ = gan.train_motion3dgan(train_curves, train_labels, gan_config)
    lstm = gan.train_lstm_generator(motion[is_train], train_labels, epochs, seed)
    per_label = max(10, int(np.ceil(is_test.sum() / len(names))))
    generated = {"motion3dgan": [], "lstm": []}
    for k, name in enumerate(names):
        generated["motion3dgan"].append(motion3dgan.generate(name, per_label, seed=seed + 1000 + k))
        generated["lstm"].append(lstm.generate(name, per_label, seed=seed + 1000 + k))
    generated_ids = np.repeat(np.arange(len(names)), per_label)

    stage(4, "accuracy, FID, amplitude and locality")
    neutral = np.stack([c[0] for c, k in zip(curves, is_test, strict=True) if k]).mean(axis=0)
    amplitude = motion_amplitudes(
        motion[is_test],
        [lab for lab, k in zip(labels, is_test, strict=True) if k],
        dict(zip(names, generated["motion3dgan"], strict=True)),
        float(np.linalg.norm(neutral - neutral.mean(axis=0))),
    )
    real_features = gan.classifier_features(classifier, motion[is_test])
    fid = {}
    for key, parts in generated.items():
        curves_k = np.concatenate(parts)
        accuracy[key] = gan.classifier_accuracy(classifier, curves_k, generated_ids)
        fid[key] = gan.frechet_distance(gan.classifier_features(classifier, curves_k), real_features)
    return {
        "accuracy": accuracy,
        "fid": fid,
        "amplitude": amplitude,
        "n_generated_per_label": per_label,
        "n_test_clips": int(is_test.sum()),
    }


def evaluate_animate(
    dataset,  # noqa: ANN001 - FaceDataset
    small: bool = False,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> dict:
    """Run both experiments (see the module docstring) and return the figures (errors in mm,
    accuracies as fractions, ``seconds`` and ``stage_seconds`` of wall time)."""
    from faceforge.animate import dense

    started = time.perf_counter()
    train, test = np.sort(dataset.split("train")), np.sort(dataset.split("test"))
    s2d_config = dense.S2DConfig.tiny(seed) if small else dense.S2DConfig(seed=seed)
    stage = _StageClock(progress)
    stage(0, "S2D-Dec, held-out identities")
    identity = _s2d_held_out_identities(dataset, train, test, s2d_config)
    stage(1, "S2D-Dec, held-out expressions")
    expression = _s2d_held_out_expressions(dataset, train, test, s2d_config)
    motions = _motions(dataset, train, test, small, seed, stage)
    stage(len(STAGES), "done")
    return {
        "small": small,
        "n_train_identities": int(len(train)),
        "n_test_identities": int(len(test)),
        "s2d_identity": identity,
        "s2d_expression": expression,
        "ratio_s2d_vs_pca": identity["s2d"]["mean_mm"] / identity["pca"]["mean_mm"],
        "ratio_s2d_vs_pca_expression": expression["s2d"]["mean_mm"] / expression["pca"]["mean_mm"],
        **motions,
        "seconds": round(time.perf_counter() - started, 1),
        "stage_seconds": stage.seconds,
    }


def format_table(result: dict) -> list[str]:
    """Markdown lines of the two tables."""
    ident, expr = result["s2d_identity"], result["s2d_expression"]
    acc, fid = result["accuracy"], result["fid"]
    return [
        "| S2D-Dec vs PCA fitting (mm, mean ± std over faces) | S2D-Dec | PCA fitting | ratio |",
        "|---|---:|---:|---:|",
        f"| held-out identities | {ident['s2d']['mean_mm']:.3f} ± {ident['s2d']['std_mm']:.3f} | "
        f"{ident['pca']['mean_mm']:.3f} ± {ident['pca']['std_mm']:.3f} | {result['ratio_s2d_vs_pca']:.2f} |",
        f"| held-out expressions | {expr['s2d']['mean_mm']:.3f} ± {expr['s2d']['std_mm']:.3f} | "
        f"{expr['pca']['mean_mm']:.3f} ± {expr['pca']['std_mm']:.3f} | "
        f"{result['ratio_s2d_vs_pca_expression']:.2f} |",
        "",
        "| motions (classifier trained on real clips) | accuracy | FID to real test clips |",
        "|---|---:|---:|",
        f"| ground truth (test identities) | {100 * acc['gt']:.1f}% | - |",
        f"| Motion3DGAN | {100 * acc['motion3dgan']:.1f}% | {fid['motion3dgan']:.2f} |",
        f"| LSTM generator | {100 * acc['lstm']:.1f}% | {fid['lstm']:.2f} |",
        "",
        *amplitude_table(result.get("amplitude", {}), result.get("n_generated_per_label", 0)),
        "",
        f"{result['seconds']:.0f} s in all; per stage: "
        + ", ".join(f"{name} {sec:.0f} s" for name, sec in result.get("stage_seconds", {}).items()),
    ]


def amplitude_table(amplitude: dict[str, dict], n_seeds: int) -> list[str]:
    """Markdown lines of :func:`motion_amplitudes`' figures."""
    if not amplitude:
        return []
    lines = [
        f"| label (Motion3DGAN, {n_seeds} seeds, mean test face) | real apex (mm) | generated | ratio "
        "| eye / mouth motion, real | generated |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in amplitude.items():
        lines.append(
            f"| {label} | {row['real_peak_mm']:.1f} | {row['generated_peak_mm']:.1f} | "
            f"{row['peak_ratio']:.2f} | {row['real_eye_to_mouth']:.2f} | "
            f"{row['generated_eye_to_mouth']:.2f} |"
        )
    return lines


def take_amplitudes(
    model,  # noqa: ANN001 - animate.bundle.MotionModel
    dataset,  # noqa: ANN001 - FaceDataset
    identities: np.ndarray,
    seeds: int = 2,
    progress: ProgressCallback | None = None,
) -> dict[str, dict]:
    """Per label: the dense takes a user gets (Motion3DGAN, scaled to the face, densified by
    S2D-Dec) against the dataset's real clips, on the faces of ``identities`` (held out of the
    motion model's training).

    For every identity and each of ``seeds`` seeds a take of the label's motion is decoded on that
    identity's neutral face; every real clip of the label of those identities is taken from its
    first frame. Per take or clip: the apex (largest vertex displacement over all frames) and the
    mean displacement of the eye region (``eyes``, ``brow_*``) and of the ``mouth`` region at the
    apex frame (largest mean displacement).

    Returns:
        label -> ``real_peak_mm``, ``take_peak_mm`` (medians), ``peak_ratio``,
        ``real_eye_to_mouth``, ``take_eye_to_mouth`` (medians), ``n_takes``, ``n_clips``.
    """
    regions = dataset.regions
    eye = np.concatenate([regions["eyes"], regions["brow_left"], regions["brow_right"]])
    mouth = regions["mouth"]

    identities = set(int(i) for i in identities)
    out: dict[str, dict] = {}
    for k, label in enumerate(model.labels):
        clips = [c for c in dataset.clips if c.label == label and int(c.identity) in identities]
        real = [_apex(np.asarray(c.frames) - np.asarray(c.frames[:1]), eye, mouth) for c in clips]
        takes = []
        for identity in sorted(identities):
            neutral = np.asarray(dataset.vertices[identity, 0], dtype=np.float32)
            for seed in range(seeds):
                take = model.take(neutral, model.landmark_motion(label, seed), onset_frames=30)
                takes.append(_apex(take, eye, mouth))
        out[label] = {**_compare(real, takes, "take"), "n_takes": len(takes), "n_clips": len(clips)}
        report(progress, k + 1, len(model.labels), label)
    return out


def take_amplitude_table(amplitude: dict[str, dict]) -> list[str]:
    """Markdown lines of :func:`take_amplitudes`' figures."""
    lines = [
        "| label | real clips' apex (mm, median) | takes' apex | ratio | eye / mouth motion, real | takes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in amplitude.items():
        lines.append(
            f"| {label} | {row['real_peak_mm']:.1f} | {row['take_peak_mm']:.1f} | {row['peak_ratio']:.2f} | "
            f"{row['real_eye_to_mouth']:.2f} | {row['take_eye_to_mouth']:.2f} |"
        )
    return lines
