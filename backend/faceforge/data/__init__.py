"""Face data: the dataset type, the anny dataset builder and loaders for data users bring.

Importing this package is cheap: anny and torch load only when a build needs them.
"""

from faceforge.data.build import BuildConfig, build_dataset, load_built_dataset, read_manifest
from faceforge.data.dataset import BlendshapeClips, Clip, FaceDataset, MeshClips
from faceforge.data.loaders import load_coma, load_dataset, load_facewarehouse, load_mesh_folder

__all__ = [
    "BlendshapeClips",
    "BuildConfig",
    "Clip",
    "FaceDataset",
    "MeshClips",
    "build_dataset",
    "load_built_dataset",
    "load_coma",
    "load_dataset",
    "load_facewarehouse",
    "load_mesh_folder",
    "read_manifest",
]
