"""3D face masks: landmarks -> face geometry -> mask surface -> z-buffered rasterizer; offline mask records.

Installed as ``faceocc.render``.
"""
