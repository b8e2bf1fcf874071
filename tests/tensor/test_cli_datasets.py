import json

import numpy as np
import pytest

from rankfold.cli.main import main
from rankfold.datasets import (
    load_covid19_serology,
    load_il2,
    load_indian_pines_tensor,
    load_kinetic,
)


@pytest.fixture
def tensor_file(tmp_path):
    rng = np.random.default_rng(0)
    A, B, C = (rng.standard_normal((n, 2)) for n in (6, 7, 8))
    X = np.einsum("ir,jr,kr->ijk", A, B, C)
    path = tmp_path / "X.npy"
    np.save(path, X)
    return path, X


@pytest.mark.parametrize("method, rank", [("cp", "2"), ("tucker", "2,2,2"), ("tt", "2")])
def test_cli_methods_write_parts(tensor_file, tmp_path, capsys, method, rank):
    path, X = tensor_file
    out = tmp_path / "out.npz"
    rc = main(["tensor", str(path), "--method", method, "--rank", rank, "--out", str(out),
               "--format", "json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fit"] > 1 - 1e-6
    with np.load(out) as z:
        if method == "cp":
            M = np.einsum("r,ir,jr,kr->ijk", z["weights"], z["factor_0"], z["factor_1"],
                          z["factor_2"])
        elif method == "tucker":
            M = np.einsum("abc,ia,jb,kc->ijk", z["core"], z["factor_0"], z["factor_1"],
                          z["factor_2"])
        else:
            M = np.einsum("aib,bjc,ckd->ijk", z["core_0"], z["core_1"], z["core_2"])
    np.testing.assert_allclose(M, X, atol=1e-6)


def test_cli_mask_and_nan(tensor_file, tmp_path, capsys):
    path, X = tensor_file
    mask = np.random.default_rng(1).random(X.shape) > 0.2
    np.save(tmp_path / "M.npy", mask)
    rc = main(["tensor", str(path), "--rank", "2", "--mask", str(tmp_path / "M.npy"),
               "--out", str(tmp_path / "o.npz"), "--format", "json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["masked"]
    Xn = np.where(mask, X, np.nan)
    np.save(tmp_path / "Xn.npy", Xn)
    rc = main(["tensor", str(tmp_path / "Xn.npy"), "--rank", "2", "--format", "json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["masked"]


@pytest.mark.parametrize("argv, code, match", [
    (["--rank", "0"], 2, "'rank'"),
    ([], 2, "--rank R"),
    (["--rank", "a,b"], 2, "'--rank'"),
    (["--method", "tucker"], 2, "--rank and/or --tol"),
    (["--rank", "2", "--out", "x.txt"], 2, "'--out'"),
    (["--rank", "2", "--mask", "missing.npy"], 1, "does not exist"),
    (["--method", "tt", "--rank", "2", "--mask", "m.npy"], 2, "does not take --mask"),
])
def test_cli_errors(tensor_file, capsys, argv, code, match):
    path, _ = tensor_file
    assert main(["tensor", str(path), *argv]) == code
    assert match in capsys.readouterr().err


def test_cli_wrong_mask_shape(tensor_file, tmp_path, capsys):
    path, _ = tensor_file
    np.save(tmp_path / "M.npy", np.ones((2, 2), bool))
    assert main(["tensor", str(path), "--rank", "2", "--mask", str(tmp_path / "M.npy")]) == 2
    assert "'mask'" in capsys.readouterr().err


def test_real_tensors_load():
    k = load_kinetic()
    assert k.tensor.shape == (64, 12, 10, 60) and int((~k.mask).sum()) == 1754
    il2 = load_il2()
    assert il2.tensor.shape == (13, 4, 12, 8)
    assert int((~il2.mask).sum()) == 192 and np.isnan(il2.tensor[~il2.mask]).all()
    assert load_covid19_serology().tensor.shape == (438, 6, 11)
    ip = load_indian_pines_tensor(dtype=np.float32)
    assert ip.tensor.shape == (145, 145, 200) and ip.tensor.dtype == np.float32


def test_il2_nonneg_cp_runs_with_its_nan_mask():
    from rankfold.tensor import cp

    d = load_il2()
    res = cp(d.tensor, 2, mask=d.mask, nonneg=True, n_iter_max=20, tol=0.0, init="random",
             generator=0)
    assert res.history[-1] > 0.5
    assert np.isfinite(res.cp.to_tensor()).all()
