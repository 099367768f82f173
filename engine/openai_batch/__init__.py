"""OpenAI Batch files on local models (see batch.py)."""
