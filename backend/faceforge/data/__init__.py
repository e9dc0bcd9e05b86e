from faceforge.data.dataset import BlendshapeClips, Clip, FaceDataset, MeshClips

__all__ = ["BlendshapeClips", "Clip", "FaceDataset", "MeshClips"]
