"""Bad input: every broken file gets a RecordIOError naming file, key and offset, and nothing else."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from conftest import MXNET_FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceocc.recordio import RecordDataset, RecordIOError

SRC = MXNET_FIXTURES / "insightface"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(SRC, tmp_path / "d")
    return tmp_path / "d"


def _offsets(folder: Path) -> dict[int, int]:
    rows = (line.split("\t") for line in (folder / "train.idx").read_text().splitlines())
    return {int(k): int(o) for k, o in rows}


def test_missing_idx_names_the_fix(copy):
    (copy / "train.idx").unlink()
    with pytest.raises(RecordIOError, match="faceocc index") as err:
        RecordDataset(copy)
    assert err.value.path.endswith("train.idx")


def test_missing_rec(tmp_path):
    with pytest.raises(RecordIOError, match="not found"):
        RecordDataset(tmp_path / "nothing.rec")


def test_wrong_magic_names_key_and_offset(copy):
    offset = _offsets(copy)[3]
    data = bytearray((copy / "train.rec").read_bytes())
    data[offset] ^= 0xFF
    (copy / "train.rec").write_bytes(bytes(data))
    with RecordDataset(copy) as ds, pytest.raises(RecordIOError, match="wrong magic") as err:
        ds.read(3)
    assert (err.value.key, err.value.offset) == (3, offset)
    assert err.value.path.endswith("train.rec")


def test_truncated_record(copy):
    offset = _offsets(copy)[6]
    rec = copy / "train.rec"
    rec.write_bytes(rec.read_bytes()[: offset + 20])
    idx = copy / "train.idx"
    idx.write_text("".join(f"{k}\t{o}\n" for k, o in _offsets(copy).items() if o <= offset))
    with RecordDataset(copy) as ds, pytest.raises(RecordIOError, match="truncated") as err:
        ds.read(6)
    assert err.value.key == 6 and err.value.offset == offset


def test_offset_past_the_end(copy):
    size = (copy / "train.rec").stat().st_size
    (copy / "train.idx").write_text(f"0\t0\n1\t{size + 400}\n")
    with pytest.raises(RecordIOError, match="past the end") as err:
        RecordDataset(copy)
    assert err.value.key == 1 and err.value.offset == size + 400


def test_duplicate_keys(copy):
    (copy / "train.idx").write_text("0\t0\n1\t40\n1\t840\n")
    with pytest.raises(RecordIOError, match="duplicate key") as err:
        RecordDataset(copy)
    assert err.value.key == 1


def test_index_and_data_disagree(copy):
    (copy / "train.idx").write_text("0\t0\n1\t44\n")
    with RecordDataset(copy) as ds, pytest.raises(RecordIOError, match="wrong magic"):
        ds.read(1)
    (copy / "train.idx").write_text("0\t0\n1\t40\n2\t40\n")
    with pytest.raises(RecordIOError, match="disagree"):
        RecordDataset(copy)


def test_garbage_index_line_is_located(copy):
    (copy / "train.idx").write_text("0\t0\n1\t40\nbanana\n")
    with pytest.raises(RecordIOError, match="line 3") as err:
        RecordDataset(copy)
    assert err.value.offset == len("0\t0\n1\t40\n")


def test_unknown_key(copy):
    with RecordDataset(copy) as ds, pytest.raises(RecordIOError, match="not in index"):
        ds.read(999)


def _exercise(folder: Path) -> None:
    with RecordDataset(folder) as ds:
        _ = ds.identity_ranges
        for key in ds.keys.tolist():
            ds.read(key)


MUTATION = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rec_edits=MUTATION, idx_edits=st.lists(st.tuples(st.integers(0, 10**4), st.integers(0, 255)),
                                              max_size=3),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_fuzzed_files_raise_only_recordio_errors(tmp_path_factory, rec_edits, idx_edits, cut):
    folder = tmp_path_factory.mktemp("fuzz")
    rec = bytearray((SRC / "train.rec").read_bytes())
    idx = bytearray((SRC / "train.idx").read_bytes())
    for pos, value in rec_edits:
        rec[pos % len(rec)] = value
    for pos, value in idx_edits:
        idx[pos % len(idx)] = value
    if cut is not None:
        rec = rec[: cut % (len(rec) + 1)]
    (folder / "train.rec").write_bytes(bytes(rec))
    (folder / "train.idx").write_bytes(bytes(idx))
    with contextlib.suppress(RecordIOError):
        _exercise(folder)


def test_identity_record_without_range(tmp_path):
    import numpy as np

    from faceocc.recordio import IRHeader, RecordWriter

    with RecordWriter(tmp_path / "train.rec", tmp_path / "train.idx") as w:
        w.write(0, IRHeader(2, np.array([2, 3], np.float32), 0, 0), b"")
        w.write(1, IRHeader(0, 0.0, 1, 0), b"img")
        w.write(2, IRHeader(0, 5.0, 2, 0), b"")
    with RecordDataset(tmp_path) as ds, pytest.raises(RecordIOError, match="identity") as err:
        _ = ds.identity_ranges
    assert err.value.key == 2
