"""faceocc: MSML's occlusion augmentation for face-recognition training, on the GPU, in DALI."""

__version__ = "0.1.0"
