"""GPU readings on a machine without one, memory parsing, shipped GPU profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.config.catalog import get_spec
from hpo.device.gpu import detect, load_profile, process_memory_bytes, profiles, read_profile
from hpo.errors import ConfigError, HpoError
from hpo.paths import CONFIG_DIR
from hpo.units import GIB, parse_memory


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GB", 24 * GIB),
        ("24GiB", 24 * GIB),
        ("24", 24 * GIB),
        ("80 GB", 80 * GIB),
        ("40gb", 40 * GIB),
        ("1.5GB", int(1.5 * GIB)),
        ("512MiB", 512 * 1024**2),
    ],
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "24XB", "-3GB", "0", "GB"])
def test_parse_memory_rejects_garbage(text: str) -> None:
    with pytest.raises(HpoError):
        parse_memory(text)


def test_detect_on_cpu_says_unavailable() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    info = detect()
    assert not info.available and info.total_bytes == 0 and info.name == "no GPU"
    assert process_memory_bytes() in (None, 0)


@pytest.mark.parametrize("path", sorted((CONFIG_DIR / "gpus").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_profile_validates(path: Path) -> None:
    profile = read_profile(path)
    assert profile.memory_bytes == parse_memory(path.stem) and 0 < profile.headroom_gb < 8
    assert profile.tiers[-1][0] is None


def test_24gb_profile_reproduces_known_safe_bounds() -> None:
    p = load_profile("24GB")
    for large in ("bert-large-uncased", "roberta-large", "deberta-v3-large", "xlm-roberta-large"):
        b = p.bounds(get_spec(large).params)
        assert (b.max_batch_size, b.max_grad_accum, b.max_length) == (16, 4, 384), large
    for base in ("bert-base-uncased", "roberta-base", "deberta-v3-base", "xlm-roberta-base"):
        b = p.bounds(get_spec(base).params)
        assert (b.max_batch_size, b.max_grad_accum, b.max_length) == (64, 8, 512), base
    small = p.bounds(22_700_000)  # all-MiniLM-L6-v2
    base = p.bounds(get_spec("bert-base-uncased").params)
    assert small.max_batch_size >= base.max_batch_size and small.max_length >= base.max_length
    assert small.max_grad_accum >= base.max_grad_accum


def test_bigger_gpus_widen_bounds() -> None:
    n = get_spec("bert-large-uncased").params
    widths = [load_profile(m).bounds(n).max_batch_size for m in ("24GB", "32GB", "40GB", "80GB", "141GB")]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert load_profile("32GB").name.startswith("24gb") and load_profile("48GB").name.startswith("40gb")
    small = load_profile("16GB")  # smaller than any profile: the 24gb bounds, the card's own memory
    assert small.bounds(n) == load_profile("24GB").bounds(n) and small.memory_bytes == 16 * GIB


def test_default_profile_without_gpu_is_24gb() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert load_profile(None).name == "24gb"


def test_invalid_profile_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "8gb.yaml"
    bad.write_text(
        "name: 8gb\nmemory_gb: 8\nheadroom_gb: 1\ntiers:\n  - {max_params: 100, max_batch_size: 4,"
        " max_grad_accum: 1, max_length: 128}\n"
    )
    with pytest.raises(ConfigError, match="null"):
        read_profile(bad)
    bad.write_text("tiers: [")
    with pytest.raises(ConfigError):
        profiles(tmp_path)


class _FakeNvml:
    """Three cards as NVML sees them (all of them, whatever CUDA_VISIBLE_DEVICES says)."""

    cards = (
        ("NVIDIA A10", "GPU-aaaa-0000"),
        ("NVIDIA L4", "GPU-bbbb-1111"),
        ("NVIDIA H100", "GPU-cccc-2222"),
    )

    class _Mem:
        total, used = 24 * 2**30, 2**30

    def nvmlDeviceGetCount(self) -> int:
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if not 0 <= i < len(self.cards):
            raise ValueError(i)
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int) -> object:
        return self._Mem()

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return self.cards[h][0].encode()

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self.cards[h][1]


@pytest.mark.parametrize(
    ("visible", "torch_index", "uuid"),
    [
        (None, 1, "GPU-bbbb-1111"),  # unset: the same numbering
        ("2,0", 0, "GPU-cccc-2222"),  # torch's cuda:0 is NVML's card 2
        ("2,0", 1, "GPU-aaaa-0000"),
        ("GPU-bbbb", 0, "GPU-bbbb-1111"),  # by UUID prefix
        ("GPU-cccc-2222,GPU-aaaa-0000", 1, "GPU-aaaa-0000"),
    ],
)
def test_detect_names_the_card_by_uuid_honouring_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch, visible: str | None, torch_index: int, uuid: str
) -> None:
    import hpo.device.gpu as gpu

    monkeypatch.setattr(gpu, "_nvml", lambda: _FakeNvml())
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    info = gpu.detect(torch_index)
    assert info.available and info.uuid == uuid and info.index == torch_index
    assert info.name == dict((u, n) for n, u in _FakeNvml.cards)[uuid]


def test_nvml_index_rejects_a_device_outside_cuda_visible_devices() -> None:
    from hpo.device.gpu import nvml_index

    with pytest.raises(IndexError):
        nvml_index(_FakeNvml(), 1, {"CUDA_VISIBLE_DEVICES": "2"})
    with pytest.raises(IndexError):
        nvml_index(_FakeNvml(), 0, {"CUDA_VISIBLE_DEVICES": "GPU-zzzz"})
