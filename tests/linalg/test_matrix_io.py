"""load_matrix: every supported format round-trips; every broken file is a DataFileError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from rankfold import DataFileError
from rankfold._matrix_io import load_matrix


@pytest.fixture
def dense() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((7, 5))


def test_npy_keeps_dtype(tmp_path: Path, dense: np.ndarray) -> None:
    for dt in (np.float32, np.float64, np.int64):
        p = tmp_path / f"a_{np.dtype(dt).name}.npy"
        np.save(p, dense.astype(dt))
        out = load_matrix(p)
        assert out.dtype == dt and np.array_equal(out, dense.astype(dt))


def test_npz_dense_and_key(tmp_path: Path, dense: np.ndarray) -> None:
    p = tmp_path / "one.npz"
    np.savez(p, X=dense)
    assert np.array_equal(load_matrix(p), dense)
    p2 = tmp_path / "two.npz"
    np.savez(p2, X=dense, Y=dense * 2)
    assert np.array_equal(load_matrix(p2, key="Y"), dense * 2)
    with pytest.raises(DataFileError, match=r"two.npz: holds 2 arrays \(X, Y\)"):
        load_matrix(p2)
    with pytest.raises(DataFileError, match=r"no array named 'Z' \(arrays: X, Y\)"):
        load_matrix(p2, key="Z")


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_npz_sparse(tmp_path: Path, fmt: str) -> None:
    S = sp.random(30, 20, density=0.1, random_state=1, format=fmt, dtype=np.float32)
    p = tmp_path / "s.npz"
    sp.save_npz(p, S)
    out = load_matrix(p)
    assert sp.issparse(out) and out.format == "csr" and out.dtype == np.float32
    assert np.array_equal(out.toarray(), S.toarray())


def test_mtx_sparse_and_dense(tmp_path: Path, dense: np.ndarray) -> None:
    S = sp.random(12, 9, density=0.2, random_state=2, format="coo")
    p = tmp_path / "s.mtx"
    scipy.io.mmwrite(p, S)
    out = load_matrix(p)
    assert sp.issparse(out) and np.allclose(out.toarray(), S.toarray())
    p2 = tmp_path / "d.mtx"
    scipy.io.mmwrite(p2, dense)
    assert np.allclose(load_matrix(p2), dense)


@pytest.mark.parametrize("header", [False, True])
def test_csv_and_tsv(tmp_path: Path, dense: np.ndarray, header: bool) -> None:
    hdr = ",".join(f"c{i}" for i in range(5)) if header else ""
    p = tmp_path / "a.csv"
    np.savetxt(p, dense, delimiter=",", header=hdr, comments="", fmt="%.17g")
    assert np.array_equal(load_matrix(p), dense)
    p2 = tmp_path / "a.tsv"
    np.savetxt(p2, dense, delimiter="\t", header=hdr.replace(",", "\t"), comments="",
               fmt="%.17g")
    assert np.array_equal(load_matrix(p2), dense)


def test_single_column_csv_is_2d(tmp_path: Path) -> None:
    p = tmp_path / "col.csv"
    p.write_text("1\n2\n3\n")
    assert load_matrix(p).shape == (3, 1)


def _write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


@pytest.mark.parametrize(("name", "content", "match"), [
    ("missing.npy", None, r"missing.npy: no such file"),
    ("a.txt", "1,2\n", r"unknown matrix file extension '.txt'; supported: .npy"),
    ("noext", "1,2\n", r"unknown matrix file extension '\(none\)'"),
    ("bad.npy", b"not numpy", r"bad.npy: not a readable .npy file"),
    ("bad.npz", b"PK\x03\x04garbage", r"bad.npz: not a readable .npz file"),
    ("bad.mtx", "%%MatrixMarket nonsense\n1 2\n", r"bad.mtx: not a readable Matrix Market"),
    ("ragged.csv", "1,2,3\n4,5\n", r"ragged.csv: expected a numeric table.*commas"),
    ("words.csv", "a,b\nc,d\n", r"words.csv: expected a numeric table.*after the header"),
    ("empty.csv", "", r"empty.csv: the file is empty"),
    ("headonly.csv", "a,b,c\n", r"headonly.csv: the table is empty"),
])
def test_broken_files(tmp_path: Path, name: str, content: bytes | str | None,
                      match: str) -> None:
    p = tmp_path / name if content is None else _write(tmp_path, name, content)
    with pytest.raises(DataFileError, match=match):
        load_matrix(p)


def test_wrong_array_contents(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.arange(4.0))
    with pytest.raises(DataFileError, match=r"v.npy: the array must be a 2-D matrix; got "
                                            r"an array of shape \(4,\)"):
        load_matrix(tmp_path / "v.npy")
    np.save(tmp_path / "c.npy", np.ones((2, 2), dtype=complex))
    with pytest.raises(DataFileError, match=r"c.npy: the array must hold real numbers"):
        load_matrix(tmp_path / "c.npy")
    np.save(tmp_path / "e.npy", np.ones((0, 3)))
    with pytest.raises(DataFileError, match=r"e.npy: the array is empty \(shape \(0, 3\)\)"):
        load_matrix(tmp_path / "e.npy")
    np.save(tmp_path / "o.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataFileError, match=r"o.npy: not a readable .npy file"):
        load_matrix(tmp_path / "o.npy")
    with pytest.raises(DataFileError, match=r"is a directory"):
        load_matrix(tmp_path)


# --- real matrices shipped in wheels -----------------------------------------------------------

def test_real_matrix_loaders() -> None:
    from rankfold import InvalidParameterError
    from rankfold.datasets import load_digits_matrix, load_indian_pines
    from rankfold.linalg import rsvd

    X, y = load_digits_matrix(return_labels=True)
    assert X.shape == (1797, 64) and X.dtype == np.float64 and X.min() == 0 and X.max() == 16
    assert sorted(set(y.tolist())) == list(range(10))
    assert load_digits_matrix(dtype=np.float32).dtype == np.float32
    P = load_indian_pines()
    assert P.shape == (21025, 200) and P.dtype == np.float32
    cube = load_indian_pines(unfolded=False, dtype=np.float64)
    assert cube.shape == (145, 145, 200) and np.array_equal(cube.reshape(-1, 200), P)
    with pytest.raises(InvalidParameterError, match=r"'dtype' parameter of load_digits_matrix"):
        load_digits_matrix(dtype=np.int32)
    with pytest.raises(InvalidParameterError, match=r"'unfolded'.*Got 'yes'"):
        load_indian_pines(unfolded="yes")
    # randomized SVD of real data against the exact singular values
    s = np.linalg.svd(X, compute_uv=False)
    assert np.allclose(rsvd(X, 10, generator=0).S, s[:10], rtol=1e-5)
