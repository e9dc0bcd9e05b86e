"""Similarity alignment of a character onto the template, and landmarks proposed on the character.

A character comes in any units and any orientation (Y-up exports, cm scenes). The coarse step
tries the 24 axis-aligned orientations, each with the scale that matches the template's size,
refines each by similarity ICP (template skin -> closest character points, trimmed), and keeps
the one whose surfaces agree best both ways. Landmarks are the template's 68 landmarks carried
by that transform and snapped to the character's surface; edited landmarks replace them and fix
the transform by Umeyama's closed form.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from faceforge.errors import FaceForgeError
from faceforge.topology.surface import Surface
from faceforge.topology.template import Template

__all__ = ["Similarity", "umeyama", "coarse_alignment", "propose_landmarks"]


@dataclass(frozen=True)
class Similarity:
    """``x_template = scale * rotation @ x_character + translation`` (metres in the template frame)."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Character-frame ``(..., 3)`` -> template frame."""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """Template-frame ``(..., 3)`` -> character frame."""
        return ((np.asarray(points) - self.translation) @ self.rotation) / self.scale

    def to_json(self) -> dict:
        return {
            "scale": self.scale,
            "rotation": self.rotation.tolist(),
            "translation": self.translation.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> Similarity:
        return cls(
            float(data["scale"]), np.asarray(data["rotation"], float), np.asarray(data["translation"], float)
        )


def umeyama(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """The similarity that best maps ``source (N, 3)`` onto ``target (N, 3)`` (Umeyama 1991)."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    mu_s, mu_t = w @ source, w @ target
    s, t = source - mu_s, target - mu_t
    cov = (t * w[:, None]).T @ s
    u, d, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    var = float((w * (s**2).sum(1)).sum())
    scale = float(np.trace(np.diag(d) @ sign) / max(var, 1e-300))
    return Similarity(scale, rotation, mu_t - scale * rotation @ mu_s)


#: Orientations refined fully after the short ICP runs from all 24.
REFINED_STARTS = 3


def _axis_rotations() -> list[np.ndarray]:
    """The 24 proper rotations that map coordinate axes onto coordinate axes."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            r = np.zeros((3, 3))
            r[np.arange(3), perm] = signs
            if np.linalg.det(r) > 0:
                out.append(r)
    return out


def _rms_size(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))


def _icp(
    template_points: np.ndarray, weights: np.ndarray, surface: Surface, start: Similarity, iterations: int
) -> tuple[Similarity, float]:
    """Similarity ICP of the character (``surface``, character frame) onto template points; returns
    the transform and the trimmed mean template->character distance (metres, template frame)."""
    current = start
    for _ in range(iterations):
        local = current.inverse(template_points)
        hit = surface.closest(local)
        target = current.apply(surface.points(hit))
        d = np.linalg.norm(target - template_points, axis=1)
        keep = (d <= np.quantile(d, 0.8)) & (weights > 0)
        # Solve template -> character-in-template-frame, then compose (character -> template).
        step = umeyama(target[keep], template_points[keep], weights[keep])
        current = Similarity(
            step.scale * current.scale, step.rotation @ current.rotation, step.apply(current.translation)
        )
    hit = surface.closest(current.inverse(template_points))
    d = np.linalg.norm(current.apply(surface.points(hit)) - template_points, axis=1)
    return current, float(np.mean(np.sort(d)[: int(0.8 * len(d))]))


def coarse_alignment(template: Template, surface: Surface, iterations: int = 12) -> tuple[Similarity, float]:
    """The best of 24 axis-aligned starts refined by similarity ICP (see the module docstring).

    Args:
        template: the template.
        surface: the character mesh (its own frame and units).

    Returns:
        The similarity and its score: trimmed mean template->character distance plus the same
        character->template, metres in the template frame.
    """
    points = template.vertices[template.skin]
    weights = template.fit_weights()[template.skin]
    char = surface.vertices
    size = _rms_size(char)
    if not np.isfinite(size) or size <= 0:
        raise FaceForgeError("the character mesh has no extent")
    scale = template.size() / size
    template_surface = Surface(template.vertices, template.faces[template.skin[template.faces].all(1)])
    sample = char[:: max(1, len(char) // 3000)]

    def score(sim: Similarity, forward: float) -> float:
        back = template_surface.closest(sim.apply(sample)).distances
        return forward + float(np.mean(np.sort(back)[: int(0.8 * len(back))]))

    starts = []
    for rotation in _axis_rotations():
        start = Similarity(scale, rotation, points.mean(0) - scale * rotation @ char.mean(0))
        sim, forward = _icp(points, weights, surface, start, 3)
        starts.append((score(sim, forward), sim))
    # Three short ICP runs can rank a slow-converging true orientation second: refine the best few.
    refined = []
    for _, sim in sorted(starts, key=lambda item: item[0])[:REFINED_STARTS]:
        sim, forward = _icp(points, weights, surface, sim, iterations)
        refined.append((score(sim, forward), sim))
    best_score, best = min(refined, key=lambda item: item[0])
    return best, best_score


def propose_landmarks(template: Template, surface: Surface, similarity: Similarity) -> np.ndarray:
    """``(68, 3)`` landmarks on the character (character frame): the template's landmarks carried
    by ``similarity`` and snapped to the character's closest surface point."""
    local = similarity.inverse(template.vertices[template.landmarks])
    return surface.points(surface.closest(local))
