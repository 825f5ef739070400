from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.receiver import Receiver, receiver


@pytest.fixture
def hook_receiver() -> Iterator[Receiver]:
    with receiver() as server:
        yield server
