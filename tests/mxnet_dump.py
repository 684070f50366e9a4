"""Run by the MXNet 1.9.1 oracle interpreter: prints what real MXNet reads from .rec/.idx pairs."""

import hashlib
import json
import sys

import mxnet as mx
import numpy as np

out = {}
for rec_path in sys.argv[1:]:
    reader = mx.recordio.MXIndexedRecordIO(rec_path[:-4] + ".idx", rec_path, "r")
    rows = {}
    for key in reader.keys:
        header, data = mx.recordio.unpack(reader.read_idx(key))
        label = header.label.tolist() if isinstance(header.label, np.ndarray) else header.label
        rows[str(key)] = [header.flag, label, header.id, header.id2,
                          hashlib.sha256(data).hexdigest()]
    reader.close()
    sequential = mx.recordio.MXRecordIO(rec_path, "r")
    count = 0
    while sequential.read() is not None:
        count += 1
    out[rec_path] = {"records": rows, "sequential_count": count}
print(json.dumps(out))
