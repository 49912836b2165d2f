"""`make gpu-check`: the GPU path end to end, time-boxed (see __main__.py and docs/gpu.md)."""
