"""The one-pass seeded split: exact eval count, input order, every row once, independent of batching."""

import math
import random
from pathlib import Path

import numpy as np
import pytest

from steps.common.errors import StepError
from steps.dataset import split as split_mod
from steps.dataset.split import JsonlWriter, SeededSplit, eval_count


def _run(tmp_path: Path, lines: list[bytes], split: float, seed: int, batches: list[int] | None = None,
         name: str = "x") -> tuple[list[bytes], list[bytes], int, int]:
    train, evl = JsonlWriter(tmp_path / f"{name}-train"), JsonlWriter(tmp_path / f"{name}-eval")
    router = SeededSplit(split, seed, train, evl)
    rest = list(lines)
    for size in batches or [len(lines)]:
        router.extend(rest[:size])
        rest = rest[size:]
    router.extend(rest)
    n, n_eval = router.finish()
    train.close(), evl.close()
    read = [(tmp_path / f"{name}-{part}").read_bytes().splitlines() for part in ("train", "eval")]
    return read[0], read[1], n, n_eval


def _lines(n: int) -> list[bytes]:
    return [b'{"row": %d}' % i for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 7, 10, 99, 8191, 8192, 8193, 20_000, 50_001])
@pytest.mark.parametrize("split", [0.9, 0.75, 0.5, 0.01, 0.999])
def test_eval_count_is_exactly_the_ceiling_and_a_partition_in_order(tmp_path: Path, n: int, split: float) -> None:
    want = math.ceil(round((1 - split) * n, 9))
    if want >= n:
        with pytest.raises(StepError, match=f"leaves no training rows out of {n}"):
            _run(tmp_path, _lines(n), split, 3)
        return
    train, evl, rows, n_eval = _run(tmp_path, _lines(n), split, 3)
    assert (rows, n_eval, len(evl), len(train)) == (n, want, want, n - want)
    index = {line: i for i, line in enumerate(_lines(n))}
    assert sorted(index[x] for x in train + evl) == list(range(n))  # every row exactly once
    assert [index[x] for x in train] == sorted(index[x] for x in train)  # input order kept
    assert [index[x] for x in evl] == sorted(index[x] for x in evl)


def test_eval_count_matches_datasets_train_test_split() -> None:
    for n in (10, 33, 1000, 12345):
        for split in (0.9, 0.8, 0.7, 0.333):
            assert eval_count(n, split) == math.ceil(round((1 - split) * n, 9))
    assert eval_count(30, 0.9) == 3  # 0.1 * 30 is 3.0000000000000004 in floats: not 4
    assert eval_count(100, 1.0) == 0


def test_same_seed_same_split_whatever_the_batches(tmp_path: Path) -> None:
    lines = _lines(30_000)
    whole = _run(tmp_path, lines, 0.9, 11, name="a")
    rng = random.Random(0)
    cuts = [rng.randint(1, 5000) for _ in range(30)]
    assert _run(tmp_path, lines, 0.9, 11, batches=cuts, name="b") == whole
    assert _run(tmp_path, lines, 0.9, 11, batches=[1] * 100 + [8191, 8193], name="c") == whole
    other = _run(tmp_path, lines, 0.9, 12, name="d")
    assert other[1] != whole[1] and len(other[1]) == len(whole[1]) == 3000


def test_one_block_draws_exactly_what_a_whole_dataset_draw_did(tmp_path: Path) -> None:
    """Up to BLOCK_ROWS rows the split is the earlier ``default_rng(seed).choice(n, k)`` draw, row for row."""
    n, split, seed = 5000, 0.8, 42
    lines = _lines(n)
    _, evl, _, k = _run(tmp_path, lines, split, seed)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    assert evl == [line for line, m in zip(lines, mask, strict=True) if m]


def test_eval_rows_spread_over_the_whole_input(tmp_path: Path) -> None:
    n = 10 * split_mod.BLOCK_ROWS
    _, evl, _, _ = _run(tmp_path, _lines(n), 0.9, 1)
    index = {line: i for i, line in enumerate(_lines(n))}
    per_block = np.bincount([index[x] // split_mod.BLOCK_ROWS for x in evl], minlength=10)
    assert per_block.tolist() == [eval_count((b + 1) * split_mod.BLOCK_ROWS, 0.9)
                                  - eval_count(b * split_mod.BLOCK_ROWS, 0.9) for b in range(10)]


def test_a_block_closes_at_the_byte_cap_wherever_batches_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split_mod, "BLOCK_BYTES", 1000)
    routed: list[int] = []
    real = SeededSplit._route

    def spy(self: SeededSplit) -> None:
        routed.append(len(self.block))
        real(self)

    monkeypatch.setattr(SeededSplit, "_route", spy)
    lines = [b"x" * (50 + (i * 37) % 200) for i in range(400)]
    whole = _run(tmp_path, lines, 0.7, 5, name="a")
    blocks = list(routed)
    routed.clear()
    assert _run(tmp_path, lines, 0.7, 5, batches=[3, 1, 17, 40, 2] * 20, name="b") == whole
    assert routed == blocks and len(blocks) > 10
    sizes = [len(x) for x in lines]
    start = 0
    for m in blocks[:-1]:  # each block is the shortest run of rows that reaches the cap
        assert sum(sizes[start:start + m]) >= 1000 > sum(sizes[start:start + m - 1])
        start += m


def test_writer_records_rows_and_bytes(tmp_path: Path) -> None:
    w = JsonlWriter(tmp_path / "out.jsonl")
    w.write_lines([b"a", b"bb"])
    w.write_lines([])
    w.write_lines([b"ccc"])
    info = w.close()
    data = (tmp_path / "out.jsonl").read_bytes()
    assert data == b"a\nbb\nccc\n"
    assert info == {"rows": 3, "bytes": len(data)}
