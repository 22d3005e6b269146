"""Device names of configs and command lines."""

from __future__ import annotations

import pytest
import torch

from ladon.device import DeviceError, resolve_device
from ladon.errors import LadonError


def test_cpu_and_auto_resolve_on_this_machine() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_unknown_names_are_a_typed_error() -> None:
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    assert issubclass(DeviceError, LadonError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_typed_error() -> None:
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda:1")
