"""Per-family tables: where a family's module names differ from the generic
ones, what it lacks by design, and how its router output was read.

Every model type here has a tiny test model (tiny.py) and a row in
docs/architectures.md. A family not listed uses generic discovery.
Vision-language wrappers are registered under their text backbone's type too.
"""

from __future__ import annotations

from ..attention import KINDS as ATTENTION_KINDS
from .base import ADAPTERS, FamilyTable, with_table

DENSE = "dense decoder"

# Routers of transformers 5.x return (logits, top-k weights, top-k indices); the
# router site hooks output[0]. How the experts were then chosen differs:
SOFTMAX_TOPK = "router output[0] = logits x @ W.T (no bias); experts chosen by softmax -> top-k"
ROUTERS = {
    "mixtral": f"{SOFTMAX_TOPK}, weights renormalised over the top-k",
    "qwen_moe": f"{SOFTMAX_TOPK}, renormalised if norm_topk_prob",
    "olmoe": f"{SOFTMAX_TOPK}, renormalised if norm_topk_prob",
    "gpt_oss": "router output[0] = logits x @ W.T + b; top-k of the logits, softmax over the k chosen",
    "deepseek_v3": (
        "router output[0] = float32 logits x @ W.T; experts chosen by sigmoid + e_score_correction_bias, "
        "group-limited top-k (n_group, topk_group); weights x routed_scaling_factor"
    ),
}


def register(names: tuple[str, ...], table: FamilyTable) -> None:
    for n in names:
        ADAPTERS.register(n, table)


def moe(router: str, note: str, **kw) -> FamilyTable:
    # MoE-only families: the SwiGLU gate and activation live inside the fused experts (kind "expert").
    absent = frozenset({"gate", "act"}) | kw.pop("absent", frozenset())
    return with_table(router_logits="output", router_note=ROUTERS[router], absent=absent, note=note, **kw)


# --- dense, llama-like: q/k/v/o, gate/up/down, RMSNorm --------------------------------------
register(("llama",), with_table(note=DENSE))
register(("mistral",), with_table(note=f"{DENSE}, sliding-window attention"))
register(("qwen2",), with_table(note=DENSE))
register(("qwen3",), with_table(note=f"{DENSE}, q/k norms"))
register(("olmo2",), with_table(note=f"{DENSE}, post-norms only (no input norms), q/k norms"))
register(
    ("qwen2_5_vl", "qwen2_5_vl_text"),
    with_table(note="vision-language wrapper: its text backbone (qwen2-like) is measured"),
)
register(
    ("phi3",),
    with_table(
        gate_from_act_input=True, note=f"{DENSE}, fused qkv_proj and gate_up_proj (gate = activation input)"
    ),
)

# --- Gemma: scaled embeddings, GeGLU, sandwich norms ------------------------------------------
GEMMA_EMB = "embedding output, after Gemma's sqrt(hidden_size) scaling"
SANDWICH = "attention / MLP outputs are rescaled by post-norms before the residual add: see norm.post_*"
register(("gemma",), with_table(embedding_note=GEMMA_EMB, note=f"{DENSE}, GeGLU"))
register(("gemma2",), with_table(embedding_note=GEMMA_EMB, note=f"{DENSE}, GeGLU; {SANDWICH}"))
# Gemma 3 normalises q and k after the head transpose: (batch, heads, seq, dim).
QK_HEADS = ("q_norm", "k_norm")
register(
    ("gemma3_text",),
    with_table(heads_first=QK_HEADS, embedding_note=GEMMA_EMB, note=f"{DENSE}, GeGLU, q/k norms; {SANDWICH}"),
)
register(
    ("gemma3",),
    with_table(
        heads_first=QK_HEADS,
        embedding_note=GEMMA_EMB,
        note=f"vision-language wrapper: its gemma3_text backbone is measured; {SANDWICH}",
    ),
)

# --- no SwiGLU gate: fc -> act -> proj ---------------------------------------------------------
NO_GATE = frozenset({"gate"})
register(
    ("gpt2",), with_table(absent=NO_GATE, note="Conv1D linears, fc -> gelu -> proj (no gate), LayerNorm")
)
register(
    ("gpt_neox",),
    with_table(
        absent=NO_GATE, note="parallel attention + MLP residual, dense_h_to_4h -> gelu -> dense_4h_to_h"
    ),
)
register(
    ("falcon",),
    with_table(
        absent=NO_GATE | frozenset(ATTENTION_KINDS),
        attention_fn=False,
        note="parallel attention + MLP, ln_attn / ln_mlp, fused query_key_value; "
        "attention computed inline (no query/key/value/attn_logits sites)",
    ),
)

# --- hybrid linear attention: linear_attn (Gated DeltaNet) or self_attn per layer_types -----------
HYBRID = (
    "hybrid: Gated DeltaNet linear_attn and full self_attn layers (layer_type in the attention site's note)"
)
register(("qwen3_5", "qwen3_5_text"), with_table(note=f"{HYBRID}; dense MLP"))

# --- mixture of experts ---------------------------------------------------------------------------
register(("mixtral",), moe("mixtral", "MoE, 8 experts top-2 in the release; no shared expert"))
register(("qwen2_moe",), moe("qwen_moe", "MoE with a sigmoid-gated shared expert"))
register(("qwen3_moe",), moe("qwen_moe", "MoE, no shared expert, q/k norms"))
register(("olmoe",), moe("olmoe", "MoE, no shared expert, q/k norms"))
register(("qwen3_next",), moe("qwen_moe", f"MoE with shared expert; {HYBRID}"))
register(("qwen3_5_moe", "qwen3_5_moe_text"), moe("qwen_moe", f"MoE with shared expert; {HYBRID}"))
register(
    ("gpt_oss",),
    moe(
        "gpt_oss",
        "MoE with biased router and clamped GLU experts (no act_fn: down_proj input only); sliding/full layers",
    ),
)
# DeepSeek-V3: MLA attention; the first first_k_dense_replace layers are dense (gate and act found there).
register(
    ("deepseek_v3",),
    with_table(
        router_logits="output",
        router_note=ROUTERS["deepseek_v3"],
        heads_first=("kv_b_proj",),  # its input is the latent kv viewed as one head: (batch, 1, seq, rank)
        note="MLA attention; dense first layers, then MoE with shared experts",
    ),
)
