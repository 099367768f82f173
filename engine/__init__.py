"""The engine and what every method's run shares; knows nothing of the methods built on it.

    from engine import Engine, Request, Sampling, Result

Subsystems: backends/ (vLLM in-process, Ray scale-out), rouge/ (exact, fast ROUGE-L filtering),
clustering/ (exact DBSCAN), run/ (records in and out, progress, run directories and their steps), and
beside them the request cache, models, structured outputs and embeddings.
"""

from engine.engine import Engine
from engine.flow import Job
from engine.types import Completion, Request, Result, Sampling

__all__ = ["Completion", "Engine", "Job", "Request", "Result", "Sampling"]
