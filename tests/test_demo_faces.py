"""The demo's embedded dataset: several real identities with the extra, today's one face without it."""

from __future__ import annotations

import numpy as np
from real_faces import require_landmarks_extra

from faceocc.demo import NO_EXTRA_NOTE, prepare_embedded
from faceocc.recordio import RecordDataset
from faceocc.recordio.images import decode_image


def _by_identity(data):
    with RecordDataset(data) as ds:
        faces = {}
        for k in ds.image_keys.tolist():
            header, payload = ds.read(int(k))
            faces.setdefault(int(header.label), []).append(decode_image(payload, gray=None).astype(np.float32))
        return ds.num_classes, {label: np.stack(v) for label, v in faces.items()}


def test_demo_dataset_holds_real_identities_with_dlib_masks(tmp_path, capsys):
    require_landmarks_extra()
    data, note = prepare_embedded(tmp_path, "cpu", images=128, progress=False)
    assert note in capsys.readouterr().out and "real identities" in note and "t1.jpg" in note
    classes, faces = _by_identity(data)
    assert classes >= 7                                  # 6 in t1.jpg, insightface's sample, the astronaut
    assert (data / "mask.rec").exists() and (data / "mask_out.rec").exists()
    # views of one identity resemble each other more than they resemble other identities
    means = np.stack([faces[c].mean(0) for c in range(classes)])
    within = np.mean([np.abs(faces[c] - means[c]).mean() for c in range(classes)])
    between = np.mean([np.abs(means[a] - means[b]).mean() for a in range(classes) for b in range(a)])
    assert between > 1.5 * within, (between, within)


def test_demo_without_the_extra_keeps_one_face_and_says_how_to_get_real_ones(tmp_path, capsys, monkeypatch):
    from faceocc.render import dlib_models

    monkeypatch.setattr(dlib_models, "available", lambda: False)
    data, note = prepare_embedded(tmp_path, "cpu", images=64, progress=False)
    assert note == NO_EXTRA_NOTE and "pip install 'faceocc[landmarks]'" in capsys.readouterr().out
    classes, faces = _by_identity(data)
    assert classes == 32
    assert (data / "mask.rec").exists()
