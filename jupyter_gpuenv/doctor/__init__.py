"""Compatibility doctor: driver, CUDA runtime, compute capability and PyTorch build."""
