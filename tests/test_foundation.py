"""The shared helpers: errors, validation messages, generators, array conversion, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import rankfold
from rankfold._array import as_operator, as_tensor, to_output
from rankfold._errors import InvalidParameterError, RankfoldError, ShapeError
from rankfold._io import atomic_write_text
from rankfold._random import check_generator
from rankfold._validation import check_exactly_one, check_float, check_int, check_option


def test_error_hierarchy() -> None:
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)
    assert issubclass(ShapeError, RankfoldError)
    assert rankfold.RankfoldError is RankfoldError


def test_int_message_names_parameter_constraint_and_value() -> None:
    with pytest.raises(InvalidParameterError) as exc:
        check_int(500, "rank", "rsvd", low=1, high=300, high_name="min(m, n)")
    assert str(exc.value) == (
        "The 'rank' parameter of rsvd must be an int in [1, min(m, n)=300]. Got 500 instead."
    )
    with pytest.raises(InvalidParameterError, match="an int"):
        check_int(2.5, "rank", "rsvd", low=1)
    with pytest.raises(InvalidParameterError):
        check_int(True, "rank", "rsvd")
    assert check_int(np.int64(3), "rank", "rsvd", low=1) == 3


def test_float_option_exactly_one() -> None:
    with pytest.raises(InvalidParameterError, match="tol"):
        check_float(float("nan"), "tol", "rsvd", low=0)
    with pytest.raises(InvalidParameterError, match=r"\(0, 1\)"):
        check_float(1.0, "tol", "rsvd", low=0, high=1, closed_low=False, closed_high=False)
    with pytest.raises(InvalidParameterError, match="'gaussian', 'srht'"):
        check_option("fft", "kind", "sketch", ["gaussian", "srht"])
    with pytest.raises(InvalidParameterError, match="exactly one of 'rank' or 'tol'"):
        check_exactly_one("rsvd", rank=None, tol=None)
    with pytest.raises(InvalidParameterError, match="exactly one"):
        check_exactly_one("rsvd", rank=3, tol=0.1)
    assert check_exactly_one("rsvd", rank=3, tol=None) == "rank"


def test_generator_is_reproducible_and_leaves_global_state() -> None:
    before = torch.random.get_rng_state().clone()
    np_before = np.random.get_state()[1].copy()  # noqa: NPY002 (checks the legacy global state is untouched)
    a = torch.randn(3, generator=check_generator(5))
    b = torch.randn(3, generator=check_generator(5))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(1)
    assert check_generator(g) is g
    check_generator(None)
    check_generator(np.random.default_rng(0))
    assert torch.equal(before, torch.random.get_rng_state())
    assert np.array_equal(np_before, np.random.get_state()[1])  # noqa: NPY002
    with pytest.raises(InvalidParameterError, match="'generator'"):
        check_generator("seed")
    with pytest.raises(InvalidParameterError):
        check_generator(-1)


def test_as_tensor_kinds() -> None:
    x = np.arange(6).reshape(2, 3)
    t, info = as_tensor(x, "A", "f")
    assert t.dtype == torch.float64 and info.kind == "numpy"
    assert isinstance(to_output(t, info), np.ndarray)
    t32, info32 = as_tensor(torch.ones(2, 3, dtype=torch.float32), "A", "f")
    assert t32.dtype == torch.float32 and isinstance(to_output(t32, info32), torch.Tensor)
    with pytest.raises(InvalidParameterError, match="NaN"):
        as_tensor(np.array([[1.0, np.nan]]), "A", "f")
    with pytest.raises(ShapeError, match="non-empty"):
        as_tensor(np.zeros((0, 3)), "A", "f")
    with pytest.raises(ShapeError, match="2 dimensions"):
        as_tensor(np.zeros(3), "A", "f")
    with pytest.raises(InvalidParameterError, match="array-like of numbers"):
        as_tensor([["a", "b"]], "A", "f")


def test_operator_dense_sparse_linop_agree() -> None:
    rng = np.random.default_rng(0)
    A = sp.random(30, 20, density=0.2, random_state=rng, format="csr")
    X = torch.from_numpy(rng.standard_normal((20, 3)))
    Y = torch.from_numpy(rng.standard_normal((30, 3)))
    dense = A.toarray()
    for obj in (dense, A, spla.aslinearoperator(A)):
        op = as_operator(obj)
        np.testing.assert_allclose(op.mm(X).numpy(), dense @ X.numpy(), atol=1e-12)
        np.testing.assert_allclose(op.rmm(Y).numpy(), dense.T @ Y.numpy(), atol=1e-12)
        np.testing.assert_allclose(op.to_dense().numpy(), dense, atol=1e-12)
    assert abs(as_operator(A).fro_norm_sq() - (dense**2).sum()) < 1e-10
    bad = A.copy()
    bad.data[0] = np.inf
    with pytest.raises(InvalidParameterError, match="NaN or infinity"):
        as_operator(bad)


def test_atomic_write_keeps_old_file_on_error(tmp_path) -> None:
    p = tmp_path / "f.txt"
    atomic_write_text(p, "old")
    from rankfold._io import atomic_path

    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def test_cli_help_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "rankfold.cli.main", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"rankfold {rankfold.__version__}"
    out = subprocess.run([sys.executable, "-m", "rankfold.cli.main", "--help"],
                         capture_output=True, text=True, check=True)
    assert "demo" in out.stdout
    res = subprocess.run([sys.executable, "-m", "rankfold.cli.main"], capture_output=True,
                         text=True)
    assert res.returncode == 2


def test_demo_rejects_unknown_section() -> None:
    from rankfold.cli.main import main

    assert main(["demo", "--sections", "nope"]) == 2


def test_run_threads_keeps_order_and_restores_threads() -> None:
    import torch

    from rankfold._parallel import cpu_workers, run_threads

    before = torch.get_num_threads()
    seen: list[int] = []

    def job(i: int) -> int:
        seen.append(torch.get_num_threads())
        # a nested call from a worker runs inline instead of waiting for busy workers
        return sum(run_threads(lambda j: j * i, range(3), 2))

    assert run_threads(job, range(6), 2) == [3 * i for i in range(6)]
    assert set(seen) == {1}  # one torch thread per worker
    assert torch.get_num_threads() == before
    assert cpu_workers(torch.device("cpu"), 1) == 1
    assert cpu_workers(torch.device("cpu"), 10, requested=3) == 3
    assert cpu_workers(torch.device("meta"), 10) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_run_threads_works_in_a_forked_child() -> None:
    from rankfold._parallel import run_threads

    assert run_threads(lambda j: j + 1, range(4), 2) == [1, 2, 3, 4]  # pool exists now
    pid = os.fork()
    if pid == 0:  # child: the inherited pool has no threads; a fresh one must be made
        ok = run_threads(lambda j: j + 1, range(4), 2) == [1, 2, 3, 4]
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("run_threads hung in a forked child")
