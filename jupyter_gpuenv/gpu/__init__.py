"""GPU status: NVML behind one adapter, a shared sampler, per-kernel attribution."""
