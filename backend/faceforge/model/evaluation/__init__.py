"""Evaluate BabyFlow models: fitting error vs linear baselines, latent Gaussianity, samples.

Modules: :mod:`.protocol` (held-out faces, the per-population run, :func:`evaluate_models`),
:mod:`.baselines` (the linear PCA 3DMMs), :mod:`.metrics` (Gaussianity, training codes, mesh
distortion, nearest-face distance), :mod:`.plots` (KDE and error-map figures) and :mod:`.report`
(the markdown tables).

The protocol of BabyFlow Sec. 2.3, 2.6 and 4.5 on held-out identities of a built dataset.

Protocol of :func:`evaluate_models`, for the infant population (< 3 years, the paper's) and for
all ages, every row on the same data:

- **Models.** BabyFlow is built with ``faceforge model build``'s settings
  (:func:`faceforge.store.model_build_config`) on the
  population's training identities (``small``: at most 10 flow epochs and 300 clip-blend
  expression codes, 2 faces per identity, a smoke test of the protocol rather than a result).
  A model file already built with those settings on the same training data is reused instead
  (``<out_dir>/models/babyflow-<population>.pt``, where built models are saved, then the
  model cache of :mod:`faceforge.store`); reuse is checked by reproducing the model's training codes from the
  dataset (:func:`~.metrics.training_codes`). Two linear PCA 3DMMs
  are built on the same identities, without augmentation (BabyFM had none): ``babyfm_pca``
  from ONE face per training identity showing a seeded random expression (any of the 82,
  neutral included; no expression tensor), as BabyFM was built; ``tensor_pca`` from every
  face of the identity x expression tensor. Both keep ``r_id + r_ex`` components (the
  bilinear model's total; ``babyfm_pca`` at most ``n_train - 1``), so the two baselines
  differ only in their training faces.
- **Held-out faces.** For every test identity of the population, 6 expressive faces: 4 named
  non-neutral expressions drawn (seeded per identity) from the 81, plus the apex frames
  (largest displacement from the clip's first frame) of 2 seeded dynamic clips, i.e. expression
  blends no training face shows. Every face gets a seeded random rigid motion (rotation up to
  5 degrees about a random axis, translation up to 5 mm) so that each method's Procrustes
  alignment is part of the fit. Identity-seeded choices make an infant's test faces identical
  in both populations.
- **Fitting.** ``babyfm_pca`` and ``tensor_pca``: 10 rounds of Procrustes onto the current fit
  (the mean face first) and a ridge solve of the PCA coefficients with their variances as a
  Gaussian prior, with the energy of :func:`faceforge.model.fitting.fit_scan`
  (``gamma1 * mean squared vertex distance in mm^2 + gamma2 * mean(c^2 / lambda)``);
  ``bilinear`` and ``bilinear_flow``: :func:`~faceforge.model.fitting.fit_scan` without and
  with flows. Each method's ``gamma2`` is chosen from :data:`PRIOR_GRID` by the lowest mean
  error on the population's validation identities (same face rule; at most 4 identities, a
  seeded choice), then applied to test.
- **Error.** Per face, the mean per-vertex Euclidean distance (mm) between fit and face over
  all vertices of the head mesh (rigid motions do not change it); reported as mean +- std over
  faces, per region (mouth, eyes, nose) and as ratios.
- **Latent Gaussianity.** On the codes each flow was trained on (:func:`~.metrics.training_codes`):
  per-dimension skewness, excess kurtosis and a normality test of the standardised codes ``w``
  and of ``z = f(w)``; KDE plots of the first 4 components.
- **Samples at equal Mahalanobis radius** (Eq. 24, ``rho = 0.95``) with and without flows: the
  distance to the nearest training face and mesh distortion (:func:`~.metrics.mesh_distortion`).

Units: metres inside, millimetres in results.
"""

from faceforge.model.evaluation.baselines import LinearPCAModel, build_pca_model, fit_pca, pca_baselines
from faceforge.model.evaluation.metrics import (
    gaussianity_statistics,
    mesh_distortion,
    nearest_face_distance,
    training_codes,
)
from faceforge.model.evaluation.protocol import (
    METHODS,
    PAPER,
    PRIOR_GRID,
    REGIONS,
    HeldOutFaces,
    evaluate_models,
    evaluate_population,
    fitting_summary,
    held_out_faces,
)
from faceforge.model.evaluation.report import format_report

__all__ = [
    "METHODS",
    "PAPER",
    "PRIOR_GRID",
    "REGIONS",
    "HeldOutFaces",
    "LinearPCAModel",
    "build_pca_model",
    "evaluate_models",
    "evaluate_population",
    "fit_pca",
    "fitting_summary",
    "format_report",
    "gaussianity_statistics",
    "held_out_faces",
    "mesh_distortion",
    "nearest_face_distance",
    "pca_baselines",
    "training_codes",
]
