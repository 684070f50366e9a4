"""DALI pipelines over MXNet RecordIO face datasets, and the loader that hands their batches to PyTorch.

Installed as ``faceocc.dali_pipes``; the record format itself is :mod:`faceocc.recordio` (no DALI).
"""
