"""Backends behind the engine's seam: the base class, vLLM in-process, Ray scale-out."""
