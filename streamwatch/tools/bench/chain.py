"""The steps of `streamwatch bench levers`' chain, in order: each adds one lever to the step above."""

CHAIN = ("plain", "no-kv-cache", "fused-kernels", "compile", "compile-static", "fp8")
