"""IPython magics loaded into kernels (%gpuinfo)."""
