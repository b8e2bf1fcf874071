import pytest


@pytest.mark.slow
def test_tensor_demo_quick_section():
    from rankfold.demos import tensor

    section = tensor.run(quick=True)
    assert section.rows and len(section.rows[0]) == len(section.columns)
    for row in section.rows:
        assert 0 < row[-1] < 0.2  # held-out relative error on Kinetic
