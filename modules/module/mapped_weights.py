"""Weights backed by their file's memory mapping instead of the process's own copies.

Where a weight is kept in the dtype its file stores it in (an fp8_scaled file into fp8 storage, bf16 into bf16), the
loader can hand out a view of the file's mapping rather than reading the bytes into a fresh tensor. Those pages belong
to the page cache: several processes on one machine share one copy, and the kernel can drop them under pressure and
read them again from the file when they are used. What is mapped here is what stays in CPU memory: the inactive A14B
expert while it is offloaded and the swapped blocks of block swapping (`modules/module/block_swap.py`).

Safety:
- the mapping is private copy-on-write (`mmap.ACCESS_COPY`): an in-place write to a mapped weight (a merge, a
  mistake) changes that page of this process only, never the file;
- every mapped tensor holds a reference to the mapping (torch.frombuffer), so the mapping lives as long as any
  weight uses it; the file's descriptor is closed at once (the mapping does not need it);
- a tensor whose offset in the file is not a multiple of its dtype's size cannot be viewed: it is copied instead and
  counted (`FileMapping.copied`).

Moving a module to the GPU and back (expert offloading) would give every weight a fresh anonymous CPU copy;
`move_module` remembers, per module, the mapped tensor behind each frozen weight as it leaves the CPU and points the
weight at it again when it comes back, so the round trip copies nothing into the process's own memory.
"""

from __future__ import annotations

import mmap
import weakref
from pathlib import Path

import torch
from torch import nn

# Address ranges of live mappings; the weak reference is to the mmap object, which every view keeps alive.
_LIVE: list[tuple[weakref.ref, int, int]] = []
_SOURCES = "mapped_weight_sources"  # module.__dict__ key: {tensor name: its mapped CPU tensor}


class FileMapping:
    """One file mapped read-only into this process (private copy-on-write), viewed as tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self.path.open("rb") as file:
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
        self._bytes = torch.frombuffer(self._map, dtype=torch.uint8)  # holds the mapping; views share it
        self.start = self._bytes.data_ptr()
        self.end = self.start + self._bytes.numel()
        self.mapped = 0  # tensors handed out as views
        self.copied = 0  # tensors copied because their offset does not fit their dtype's alignment
        _LIVE[:] = [entry for entry in _LIVE if entry[0]() is not None]
        _LIVE.append((weakref.ref(self._map), self.start, self.end))

    def tensor(self, start: int, end: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        """Bytes [start, end) of the file as a tensor: a view of the mapping where aligned, else a copy."""
        raw = self._bytes[start:end]
        if start % dtype.itemsize == 0:
            self.mapped += 1
            return raw.view(dtype).view(shape)
        self.copied += 1
        return raw.clone().view(dtype).view(shape)


def is_mapped(tensor: torch.Tensor) -> bool:
    """Whether `tensor`'s memory lies in a live file mapping (a CPU tensor viewed from a FileMapping)."""
    if tensor.device.type != "cpu" or tensor.numel() == 0:
        return False
    address = tensor.data_ptr()
    return any(start <= address < end and alive() is not None for alive, start, end in _LIVE)


def mapped_bytes(module: nn.Module) -> tuple[int, int]:
    """(bytes of `module`'s tensors backed by a file mapping, bytes of the others), counting each tensor once."""
    seen, mapped, other = set(), 0, 0
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        size = tensor.numel() * tensor.element_size()
        if is_mapped(tensor):
            mapped += size
        else:
            other += size
    return mapped, other


def _frozen_tensors(module: nn.Module):
    """(owning module, name, registry, tensor) of every frozen parameter and every buffer."""
    for owner in module.modules():
        for registry in (owner._parameters, owner._buffers):
            for name, tensor in registry.items():
                if tensor is not None and not tensor.requires_grad:
                    yield owner, name, registry, tensor


def remember_mapped(module: nn.Module) -> None:
    """Record, on each owning module, the mapped CPU tensor behind every frozen weight that has one now."""
    for owner, name, _, tensor in _frozen_tensors(module):
        if is_mapped(tensor):
            owner.__dict__.setdefault(_SOURCES, {})[name] = tensor.data


def point_at_mapping(module: nn.Module) -> int:
    """Point every frozen weight that has a remembered mapped tensor (of the same shape and dtype) back at it, dropping
    its current copy; returns how many. Frozen weights do not change, so the file's bytes are still their value."""
    count = 0
    for owner, name, _, tensor in _frozen_tensors(module):
        source = remembered_source(owner, name, tensor)
        if source is not None and tensor.data_ptr() != source.data_ptr():
            tensor.data = source
            count += 1
    return count


def remembered_source(owner: nn.Module, name: str, tensor: torch.Tensor) -> torch.Tensor | None:
    """The mapped CPU tensor behind `owner`'s frozen tensor `name`: the tensor itself when it is mapped, the one
    remembered as it left for the device, else None."""
    if is_mapped(tensor):
        return tensor.detach()
    source = owner.__dict__.get(_SOURCES, {}).get(name)
    if source is None or source.shape != tensor.shape or source.dtype != tensor.dtype or tensor.requires_grad:
        return None
    return source


def move_module(module: nn.Module, device: torch.device | str) -> nn.Module:
    """`module.to(device)`, keeping frozen weights backed by their file mapping while they are in CPU memory: leaving
    the CPU, the mapped tensors are remembered; coming back, the weights point at them again instead of new copies."""
    device = torch.device(device)
    if device.type == "cpu":
        point_at_mapping(module)  # before .to(): the device copies go, no anonymous copy is made
    else:
        remember_mapped(module)
    return module.to(device)
