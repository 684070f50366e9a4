"""Datasets on disk: packing image folders into records (``pack``), looking at a dataset (``faceocc info``
and ``verify``: ``info``, ``checks``), the mask set beside it (``mask_sets``, ``mask_alignment``) and a
small example dataset made from images inside installed packages (``example``)."""
