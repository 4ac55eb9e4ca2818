"""Tiny random-initialised models of every supported family, for tests and docs.

Structure only: 2 layers, hidden size 32, 4 experts (top-2) where the family is
MoE, float32, weights are noise. `tiny_model("qwen3_moe", vocab_size=40)`
builds one in well under a second once transformers is imported.

TINY holds the config overrides per model type, as data; the keys of TINY are
the families the coverage test and docs/architectures.md run over ("TYPE+vl":
the vision-language wrapper class of TYPE).
"""

from __future__ import annotations

import torch

COMMON = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=128,
)
MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16)
SHARED = dict(shared_expert_intermediate_size=16)
HYBRID = dict(
    layer_types=["linear_attention", "full_attention"],
    linear_num_value_heads=4,
    linear_num_key_heads=2,
    linear_key_head_dim=8,
    linear_value_head_dim=8,
    linear_conv_kernel_dim=2,
)
SMALL_VISION = dict(
    depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, patch_size=4
)

# model type -> (config overrides, text overrides for composite configs or None)
TINY: dict[str, dict] = {
    "llama": {},
    "mistral": {},
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "qwen2": {},
    "qwen2_moe": {**MOE, **SHARED},
    "qwen3": {},
    "qwen3_moe": MOE,
    "qwen3_next": {**MOE, **SHARED, **HYBRID},
    "qwen3_5": dict(text_config={**COMMON, **HYBRID}, vision_config=SMALL_VISION),
    "qwen3_5_moe": dict(text_config={**COMMON, **MOE, **SHARED, **HYBRID}, vision_config=SMALL_VISION),
    "gemma": {},
    "gemma2": {},
    "gemma3_text": dict(sliding_window=4),
    "gemma3": dict(
        text_config={**COMMON, "sliding_window": 4},
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=8,
            patch_size=4,
        ),
        mm_tokens_per_image=4,
    ),
    "gpt_oss": dict(num_local_experts=4, num_experts_per_tok=2, sliding_window=4),
    "deepseek_v3": dict(
        n_routed_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=16,
        n_shared_experts=1,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=8,
        head_dim=None,
        num_key_value_heads=4,
    ),
    "olmo2": {},
    "olmoe": dict(num_experts=4, num_experts_per_tok=2),
    "phi3": dict(pad_token_id=0),
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_positions=128),
    "gpt_neox": dict(rotary_pct=0.5),
    "falcon": dict(new_decoder_architecture=True, num_kv_heads=2, head_dim=None),
    "qwen2_5_vl": dict(
        text_config={**COMMON, "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2]}},
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=32,
            patch_size=4,
            window_size=8,
            fullatt_block_indexes=[0],
        ),
    ),
}


# Vision-language wrappers of types whose AutoModelForCausalLM class is text-only:
# "TYPE+vl" builds the image-text-to-text class of TYPE (its text backbone is measured).
TINY["qwen3_5+vl"] = TINY["qwen3_5"]
TINY["qwen3_5_moe+vl"] = TINY["qwen3_5_moe"]


def tiny_config(name: str, vocab_size: int = 64):
    """AutoConfig.for_model with the tiny overrides; composite configs get a tiny text config."""
    from transformers import AutoConfig

    model_type = name.removesuffix("+vl")
    over = dict(TINY[name])
    if "text_config" in over:
        over["text_config"] = {**over["text_config"], "vocab_size": vocab_size}
        return AutoConfig.for_model(model_type, **over)
    kw = {k: v for k, v in {**COMMON, **over}.items() if v is not None}  # None: keep the family default
    return AutoConfig.for_model(model_type, **kw, vocab_size=vocab_size)


def tiny_model(name: str, vocab_size: int = 64, seed: int = 0) -> torch.nn.Module:
    """The class AutoModelForCausalLM picks, or the image-text-to-text class where causal
    LM has no entry (qwen2_5_vl) or for "TYPE+vl"; eval mode, float32."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cfg = tiny_config(name, vocab_size)
    causal = name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES  # never for "TYPE+vl"
    auto = AutoModelForCausalLM if causal else AutoModelForImageTextToText
    torch.manual_seed(seed)
    model = auto.from_config(cfg, dtype=torch.float32)
    return model.eval().requires_grad_(False)
