"""``rankfold svd``: every input format, human and JSON output, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from rankfold.cli.main import main


@pytest.fixture
def lowrank() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((40, 4)) @ rng.standard_normal((4, 25))


def _write(path: Path, A: np.ndarray) -> Path:
    ext = path.suffix
    if ext == ".npy":
        np.save(path, A)
    elif ext == ".npz":
        sp.save_npz(path, sp.csr_array(A))
    elif ext == ".mtx":
        scipy.io.mmwrite(path, sp.coo_array(A))
    else:
        np.savetxt(path, A, delimiter=",", header="a" + ",a" * (A.shape[1] - 1), comments="",
                   fmt="%.17g")
    return path


@pytest.mark.parametrize("ext", [".npy", ".npz", ".mtx", ".csv"])
def test_svd_every_format_writes_factors(tmp_path: Path, lowrank: np.ndarray, ext: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / f"m{ext}", lowrank)
    out = tmp_path / "f.npz"
    assert main(["svd", str(src), "--rank", "4", "--out", str(out), "--seed", "3"]) == 0
    with np.load(out) as z:
        U, S, Vh = z["U"], z["S"], z["Vh"]
    assert U.shape == (40, 4) and S.shape == (4,) and Vh.shape == (4, 25)
    assert np.allclose((U * S) @ Vh, lowrank, atol=1e-9)
    text = capsys.readouterr()
    assert "relative error" in text.out and "rank" in text.out
    assert "[svd]" in text.err  # hints on stderr, not stdout
    assert "[svd]" not in text.out


def test_svd_tol_json(tmp_path: Path, lowrank: np.ndarray,
                      capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / "m.npy", lowrank)
    assert main(["svd", str(src), "--tol", "1e-6", "--format", "json"]) == 0
    cap = capsys.readouterr()
    summary = json.loads(cap.out)
    assert summary["rank"] == 4 and summary["mode"] == "tol"
    assert summary["shape"] == [40, 25] and summary["relative_error"] < 1e-6
    assert len(summary["singular_values"]) == 4
    default_out = tmp_path / "m.svd.npz"
    assert summary["output"] == str(default_out) and default_out.exists()
    assert cap.err == ""


def test_svd_options_are_passed(tmp_path: Path, lowrank: np.ndarray,
                                capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / "m.npy", lowrank)
    args = ["svd", str(src), "--rank", "3", "--method", "krylov", "--n-iter", "1",
            "--oversample", "2", "--dtype", "float32", "--format", "json",
            "--out", str(tmp_path / "o.npz")]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "krylov" and summary["dtype"] == "float32"
    with np.load(tmp_path / "o.npz") as z:
        assert z["U"].dtype == np.float32 and z["S"].shape == (3,)
    from rankfold.linalg import rsvd

    ref = rsvd(lowrank.astype(np.float32), 3, method="krylov", n_iter=1, oversample=2,
               generator=0)
    assert np.allclose(summary["singular_values"], ref.S, rtol=1e-6)


def test_svd_precision_is_passed(tmp_path: Path, lowrank: np.ndarray,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / "m.npy", lowrank.astype(np.float32))
    for precision in ("mixed", "full"):
        out = tmp_path / f"{precision}.npz"
        assert main(["svd", str(src), "--rank", "3", "--precision", precision,
                     "--format", "json", "--out", str(out)]) == 0
        summary = json.loads(capsys.readouterr().out)
        from rankfold.linalg import rsvd

        ref = rsvd(lowrank.astype(np.float32), 3, precision=precision, generator=0)
        assert np.allclose(summary["singular_values"], ref.S, rtol=1e-6)
    with pytest.raises(SystemExit):
        main(["svd", str(src), "--rank", "3", "--precision", "half"])


@pytest.mark.parametrize(("extra", "match"), [
    ([], "exactly one of --rank and --tol. Got neither"),
    (["--rank", "2", "--tol", "0.1"], "exactly one of --rank and --tol. Got both"),
    (["--rank", "0"], r"'rank' parameter of rsvd.*Got 0"),
    (["--rank", "26"], r"'rank' parameter of rsvd.*min\(m, n\)=25\]. Got 26"),
    (["--tol", "1.5"], r"'tol' parameter of rsvd.*Got 1.5"),
    (["--rank", "2", "--oversample", "-1"], r"'oversample'.*Got -1"),
    (["--rank", "2", "--out", "x.txt"], r"'--out' option must name an .npz file"),
])
def test_usage_errors_exit_2(tmp_path: Path, lowrank: np.ndarray, extra: list[str],
                             match: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / "m.npy", lowrank)
    assert main(["svd", str(src), *extra]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert not (tmp_path / "m.svd.npz").exists()


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["svd", "x.npy", "--method", "lanczos", "--rank", "2"])
    assert exc.value.code == 2
    assert "invalid choice: 'lanczos'" in capsys.readouterr().err


def test_runtime_errors_exit_1(tmp_path: Path, lowrank: np.ndarray,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["svd", str(tmp_path / "none.npy"), "--rank", "2"]) == 1
    assert "none.npy: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3\n")
    assert main(["svd", str(bad), "--rank", "1"]) == 1
    assert "expected a numeric table" in capsys.readouterr().err
    A = lowrank.copy()
    A[1, 1] = np.nan
    src = _write(tmp_path / "nan.npy", A)
    assert main(["svd", str(src), "--rank", "1"]) == 1
    assert "contains NaN or infinity" in capsys.readouterr().err
    assert not (tmp_path / "nan.svd.npz").exists()


@pytest.mark.slow
def test_linalg_demo_section() -> None:
    from rankfold.demos import linalg

    sec = linalg.run(quick=True)
    assert sec.columns[:3] == ["data (m x n)", "method", "rank"]
    by_method = {row[1]: row for row in sec.rows}
    for name in ("rankfold rsvd (subspace)", "rankfold rsvd (krylov)"):
        assert by_method[name][5] <= 1.01  # error / optimal
    tol_rows = [r for r in sec.rows if "tol=" in r[1]]
    assert tol_rows
    for row in tol_rows:
        tol = float(row[1].split("tol=")[1].split(")")[0])
        assert row[4] <= tol
