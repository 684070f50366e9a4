"""Run by the MXNet 1.9.1 oracle interpreter: writes mask_out.rec/.idx and mask.rec/.idx beside a
dataset the way MSML's ``datasets/3d_tools/cvt_casia_webface_masked.py`` does (an independent
re-statement of its file format, not its code): train.rec read with MXNet, image keys only (no header
or identity records), written under the train record's header id, ``IRHeader(flag=2, label=float,
id, id2)`` (MXNet's ``pack`` turns a scalar label into flag 0), both packed by ``pack_img`` as JPEG
quality 95, the masked face as 3-channel BGR, the mask single-channel: 255 clean, 0 masked.

Usage: python mxnet_msml_masks.py DATASET_DIR   (the masked region stands in for a rendered mask)
"""

import os
import sys

import mxnet as mx
import numpy as np

root = sys.argv[1]
train = mx.recordio.MXIndexedRecordIO(os.path.join(root, "train.idx"), os.path.join(root, "train.rec"), "r")
header0, _ = mx.recordio.unpack(train.read_idx(0))
keys = range(1, int(header0.label[0])) if header0.flag > 0 else list(train.keys)
writers = {name: mx.recordio.MXIndexedRecordIO(os.path.join(root, f"{name}.idx"),
                                               os.path.join(root, f"{name}.rec"), "w")
           for name in ("mask_out", "mask")}
for key in keys:
    header, img = mx.recordio.unpack(train.read_idx(key))
    label = header.label if np.isscalar(header.label) else header.label[0]
    face = mx.image.imdecode(img).asnumpy()[:, :, ::-1].copy()          # BGR, as cv2 would hold it
    size = face.shape[0]
    masked = face.copy()
    masked[size // 2 + key % 5:, size // 5: size - size // 5] = (220, 120, 40)
    diff = (masked.astype(np.int16) - face.astype(np.int16))[:, :, 0]
    msk = np.full((face.shape[0], face.shape[1]), 255, np.uint8)
    msk[diff != 0] = 0
    out_header = mx.recordio.IRHeader(flag=2, label=float(label), id=header.id, id2=header.id2)
    writers["mask_out"].write_idx(header.id, mx.recordio.pack_img(out_header, masked))
    writers["mask"].write_idx(header.id, mx.recordio.pack_img(out_header, msk))
for w in writers.values():
    w.close()
print("ok")
