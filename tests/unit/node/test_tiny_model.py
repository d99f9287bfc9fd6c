"""The generated fixtures look like the files people run: GQA, quantized, two architectures."""

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader

from mesh_node.tiny_model import TinySpec, generate


def field(reader: GGUFReader, key: str):  # noqa: ANN201
    f = reader.fields[key]
    return f.parts[f.data[0]].tolist()[0]


def test_gqa_q8_0_llama(tmp_path: Path) -> None:
    spec = TinySpec(name="gqa-Q8_0", width=256, heads=8, kv_heads=2, ff=512, layers=2, dtype="q8_0")
    reader = GGUFReader(generate(spec, tmp_path))
    assert field(reader, "llama.attention.head_count") == 8 and field(reader, "llama.attention.head_count_kv") == 2
    assert field(reader, "general.file_type") == 7
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blk.0.attn_k.weight"].shape.tolist() == [256, 64]  # d x (d / heads * kv_heads)
    assert tensors["blk.0.attn_q.weight"].tensor_type == GGMLQuantizationType.Q8_0
    assert tensors["blk.0.attn_norm.weight"].tensor_type == GGMLQuantizationType.F32
    assert "output.weight" in tensors


def test_qwen2_has_qkv_biases_and_a_tied_output(tmp_path: Path) -> None:
    spec = TinySpec(name="qw-Q4_0", width=256, heads=4, kv_heads=2, ff=512, layers=1, dtype="q4_0", arch="qwen2")
    reader = GGUFReader(generate(spec, tmp_path))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "qwen2"
    tensors = {t.name: t for t in reader.tensors}
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= set(tensors)
    assert "output.weight" not in tensors
    assert tensors["blk.0.ffn_up.weight"].tensor_type == GGMLQuantizationType.Q4_0
    assert np.abs(tensors["blk.0.attn_k.bias"].data).max() > 0


def test_generation_is_deterministic(tmp_path: Path) -> None:
    spec = TinySpec(name="det", width=128, layers=1, ff=256, dtype="q8_0", kv_heads=2)
    a = generate(spec, tmp_path / "a").read_bytes()
    assert a == generate(spec, tmp_path / "b").read_bytes()


@pytest.mark.parametrize("bad", [dict(dtype="q2_x"), dict(arch="gpt9"), dict(heads=3), dict(kv_heads=3),
                                 dict(dtype="q4_k_m", width=288, heads=4)])
def test_bad_specs_say_why(bad: dict) -> None:
    with pytest.raises(ValueError):
        TinySpec(**bad)
