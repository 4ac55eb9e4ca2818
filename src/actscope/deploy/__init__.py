"""From measurement to deployment: quantized checkpoints from a run's measured ranges, and audits.

schemes.py            deploy schemes (fp8-static ...) and the run's recommendation as one
plan.py               run + scheme -> per-module plan: quantized modules, input peaks, fused
                      groups, fallbacks, ignored modules with the reason
scales.py             static input scales (quant/scales.py's rules), rounded up in the stored dtype
weights.py            per-channel symmetric weight quantization, shard by shard from the source files
compressed_tensors.py the compressed-tensors checkpoint (config through the library's models)
modelopt.py           the ModelOpt FP8 checkpoint (hf_quant_config.json)
record.py             actscope.json in the checkpoint, the run's `deployments` entry
verify.py             reload with transformers, generate, KL / perplexity against the float model
audit.py              the static scales of an existing checkpoint against a run's measured ranges
run.py                deploy(): all of the above
"""

from .run import DeployConfig, deploy

__all__ = ["DeployConfig", "deploy"]
