"""Generate small llama-architecture GGUF models with random weights.

They are the embedded default model (`make setup` writes mesh-tiny-F16 into the
cache's models folder) and the fixtures of the tests and benchmarks: no weights
are ever downloaded for either. Generation is deterministic for a given spec
(seeded RNG, fixed tensor order), so two machines generating the same spec get
byte-identical files, as two machines downloading the same model would.

The vocabulary is a byte-fallback SentencePiece ("llama") vocabulary: <unk>, <s>,
</s>, the 256 byte tokens, then printable ASCII characters and a few word pieces,
so any text tokenizes. A minimal chat template makes /v1/chat/completions work.

Fixtures look like the files people run (a fixture that is F16 only once hid a crash):
- `kv_heads < heads` gives grouped-query attention (Qwen2.5-3B: 16 heads, 2 KV heads);
- `arch="qwen2"` gives a second architecture the way Qwen2 files are laid out: Q/K/V
  biases and the output layer tied to the token embeddings (no `output.weight`);
- `dtype` is the type of the big matrices: f16, f32, or q8_0/q4_0, quantized here
  with gguf-py (norms and biases stay F32, as in converted files). K-quants
  (Q4_K_M ...) are made from an F16 file by llama.cpp's own `llama-quantize`
  (`mesh_node.quantize`), as users make them.

    python -m mesh_node.tiny_model --out DIR [--name NAME] [--width 256] [--layers 4] ...
"""

from __future__ import annotations

import argparse
import string
import sys
from dataclasses import dataclass, replace
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
FIELDS = ("name", "width", "layers", "heads", "kv_heads", "ff", "context", "dtype", "arch", "seed", "pooling",
          "quiet_layers")
DTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}  # dtype -> general.file_type (llama_ftype)
LLAMA_QUANTIZE = {"q4_k_m": "Q4_K_M", "q5_k_m": "Q5_K_M", "q6_k": "Q6_K", "q3_k_m": "Q3_K_M"}  # made by llama-quantize
ARCHS = ("llama", "qwen2")
WORDS = ["the", "and", "mesh", "model", "node", "hello", "world", "token", "split", "layer"]


@dataclass(frozen=True)
class TinySpec:
    name: str = "mesh-tiny-F16"   # file stem = model id
    width: int = 256              # n_embd
    layers: int = 4               # n_layer
    heads: int = 4                # n_head
    kv_heads: int = 0             # n_head_kv; 0: same as heads (no GQA)
    ff: int = 768                 # n_ff
    context: int = 4096           # n_ctx_train
    dtype: str = "f16"            # big matrices: "f16", "f32", "q8_0" or "q4_0"
    arch: str = "llama"           # "llama" or "qwen2" (Q/K/V biases, tied output)
    seed: int = 1234
    pooling: str = ""             # "mean" makes an embedding model (served with --embeddings)
    quiet_layers: int = 0         # extra layers after `layers` whose outputs are scaled by 1e-3: the
                                  # model is then the same spec without them (a draft) plus a tiny
                                  # residual contribution, so that draft agrees with it nearly always

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES and self.dtype not in LLAMA_QUANTIZE:
            raise ValueError(f"dtype {self.dtype!r}: one of {', '.join([*DTYPES, *LLAMA_QUANTIZE])}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch {self.arch!r}: one of {', '.join(ARCHS)}")
        kv = self.n_head_kv
        if self.width % self.heads or self.heads % kv:
            raise ValueError(f"width {self.width} / heads {self.heads} / kv_heads {kv} do not divide")
        block = 256 if self.dtype in LLAMA_QUANTIZE else 32
        if self.dtype.startswith("q") and (self.width % block or self.ff % block):
            raise ValueError(f"{self.dtype} needs width and ff that are multiples of {block}")

    @property
    def n_head_kv(self) -> int:
        return self.kv_heads or self.heads


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    pieces = ["\u2581"] + [c for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += ["\u2581" + w for w in WORDS]
    tokens += pieces
    types += [TokenType.NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def generate(spec: TinySpec, out_dir: Path) -> Path:
    if spec.dtype in LLAMA_QUANTIZE:
        return generate_quantized(spec, out_dir)
    import numpy as np
    from gguf import GGUFWriter

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.gguf"
    tmp = path.with_name(path.name + ".tmp")
    tokens, scores, types = vocabulary()
    rng = np.random.default_rng(spec.seed)

    w = GGUFWriter(str(tmp), spec.arch)

    quiet_rng = np.random.default_rng(spec.seed + 1)  # the quiet layers' own stream: the rest stays the draft's

    def matrix(name: str, rows: int, cols: int, source=None, scale: float = 1.0) -> None:  # noqa: ANN001
        data = (source or rng).standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols) * scale
        if spec.dtype in ("f16", "f32"):
            w.add_tensor(name, data.astype(np.float16 if spec.dtype == "f16" else np.float32))
            return
        data = data.astype(np.float32)
        from gguf import GGMLQuantizationType, quants
        qtype = GGMLQuantizationType[spec.dtype.upper()]
        w.add_tensor(name, quants.quantize(data, qtype), raw_dtype=qtype)

    def vector(name: str, n: int, scale: float = 0.0) -> None:
        data = np.ones(n, dtype=np.float32) if scale == 0 else rng.standard_normal(n, dtype=np.float32) * scale
        w.add_tensor(name, data)

    w.add_name(spec.name)
    w.add_context_length(spec.context)
    w.add_embedding_length(spec.width)
    w.add_block_count(spec.layers + spec.quiet_layers)
    w.add_feed_forward_length(spec.ff)
    w.add_head_count(spec.heads)
    w.add_head_count_kv(spec.n_head_kv)
    w.add_rope_dimension_count(spec.width // spec.heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(DTYPES[spec.dtype])
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    if spec.pooling:
        from gguf import PoolingType
        w.add_pooling_type(PoolingType[spec.pooling.upper()])

    n_vocab, d = len(tokens), spec.width
    d_kv = d // spec.heads * spec.n_head_kv
    matrix("token_embd.weight", n_vocab, d)
    for i in range(spec.layers):
        vector(f"blk.{i}.attn_norm.weight", d)
        matrix(f"blk.{i}.attn_q.weight", d, d)
        matrix(f"blk.{i}.attn_k.weight", d_kv, d)
        matrix(f"blk.{i}.attn_v.weight", d_kv, d)
        if spec.arch == "qwen2":
            vector(f"blk.{i}.attn_q.bias", d, scale=0.02)
            vector(f"blk.{i}.attn_k.bias", d_kv, scale=0.02)
            vector(f"blk.{i}.attn_v.bias", d_kv, scale=0.02)
        matrix(f"blk.{i}.attn_output.weight", d, d)
        vector(f"blk.{i}.ffn_norm.weight", d)
        matrix(f"blk.{i}.ffn_gate.weight", spec.ff, d)
        matrix(f"blk.{i}.ffn_up.weight", spec.ff, d)
        matrix(f"blk.{i}.ffn_down.weight", d, spec.ff)
    for i in range(spec.layers, spec.layers + spec.quiet_layers):
        vector(f"blk.{i}.attn_norm.weight", d)
        matrix(f"blk.{i}.attn_q.weight", d, d, quiet_rng)
        matrix(f"blk.{i}.attn_k.weight", d_kv, d, quiet_rng)
        matrix(f"blk.{i}.attn_v.weight", d_kv, d, quiet_rng)
        if spec.arch == "qwen2":
            for part, n in (("q", d), ("k", d_kv), ("v", d_kv)):
                w.add_tensor(f"blk.{i}.attn_{part}.bias", np.zeros(n, dtype=np.float32))
        matrix(f"blk.{i}.attn_output.weight", d, d, quiet_rng, 1e-3)
        vector(f"blk.{i}.ffn_norm.weight", d)
        matrix(f"blk.{i}.ffn_gate.weight", spec.ff, d, quiet_rng)
        matrix(f"blk.{i}.ffn_up.weight", spec.ff, d, quiet_rng)
        matrix(f"blk.{i}.ffn_down.weight", d, spec.ff, quiet_rng, 1e-3)
    vector("output_norm.weight", d)
    if spec.arch != "qwen2":  # qwen2 files of this size tie the output layer to token_embd
        matrix("output.weight", n_vocab, d)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path


def generate_quantized(spec: TinySpec, out_dir: Path) -> Path:
    """An F16 file of the same spec, quantized by llama.cpp's own llama-quantize (the
    tool users make K-quants with; the pinned build has it), then the F16 removed."""
    import subprocess
    import tempfile

    from meshcore.llama_bin import llama_bin_dir

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.gguf"
    tool = llama_bin_dir() / "llama-quantize"
    if not tool.exists():
        raise RuntimeError(f"no llama-quantize in {tool.parent}: run `make setup` (it builds it)")
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        source = generate(replace(spec, dtype="f16"), Path(tmp))  # same general.name
        out = Path(tmp) / "quantized.gguf"
        done = subprocess.run([str(tool), str(source), str(out), LLAMA_QUANTIZE[spec.dtype]],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"llama-quantize {spec.dtype} failed (exit {done.returncode}): {last}")
        out.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate a tiny random-weight llama GGUF model")
    parser.add_argument("--out", type=Path, required=True, help="folder to write NAME.gguf into")
    defaults = TinySpec()
    for field in FIELDS:
        value = getattr(defaults, field)
        parser.add_argument(f"--{field}", type=type(value), default=value)
    parser.add_argument("--if-missing", action="store_true", help="do nothing if the file exists")
    args = parser.parse_args()
    spec = TinySpec(**{k: getattr(args, k) for k in FIELDS})
    target = args.out / f"{spec.name}.gguf"
    if args.if_missing and target.exists():
        print(target)
        return
    print(f"generating {target} ({spec.width} wide, {spec.layers} layers)", file=sys.stderr)
    print(generate(spec, args.out))


if __name__ == "__main__":
    main()
