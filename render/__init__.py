"""Offline 3D face masks: landmarks -> mask surface -> z-buffered rasterizer -> mask_out.rec / mask.rec."""
