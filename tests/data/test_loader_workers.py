"""Errors raised in DataLoader workers come back as their own one-line message."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from lavt.data.workers import clean_worker_errors
from lavt.errors import InputError


class _Broken(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, item: int):
        if item == 2:
            raise InputError("x.jpg: unreadable image (truncated)")
        return item


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_error_is_the_original_one_liner(workers):
    loader = DataLoader(_Broken(), batch_size=1, num_workers=workers)
    with pytest.raises(InputError) as info, clean_worker_errors():
        list(loader)
    assert str(info.value) == "x.jpg: unreadable image (truncated)"
    assert type(info.value) is InputError


def test_other_errors_pass_through():
    with pytest.raises(InputError, match="plain"), clean_worker_errors():
        raise InputError("plain")
    with pytest.raises(KeyError), clean_worker_errors():
        raise KeyError("x")
