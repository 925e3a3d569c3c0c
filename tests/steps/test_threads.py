"""quick_handoffs: the GIL switch interval is short while the dataset step's threads hand data to each other."""

import sys

import pytest

from steps.common.threads import HANDOFF_S, quick_handoffs


@pytest.fixture()
def default_interval() -> float:
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(old)


def test_the_interval_is_short_inside_and_put_back_after(default_interval: float) -> None:
    with quick_handoffs():
        assert sys.getswitchinterval() == pytest.approx(HANDOFF_S, rel=0.05)
    assert sys.getswitchinterval() == pytest.approx(default_interval, rel=0.05)


def test_it_is_put_back_when_the_block_fails(default_interval: float) -> None:
    with pytest.raises(RuntimeError), quick_handoffs():
        raise RuntimeError("boom")
    assert sys.getswitchinterval() == pytest.approx(default_interval, rel=0.05)


def test_a_shorter_interval_set_by_the_caller_is_kept(default_interval: float) -> None:
    sys.setswitchinterval(0.00005)
    with quick_handoffs():
        assert sys.getswitchinterval() == pytest.approx(0.00005, rel=0.05)
    assert sys.getswitchinterval() == pytest.approx(0.00005, rel=0.05)
