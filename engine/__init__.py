"""Everything that computes: LLM backends, structured output, the request cache, ROUGE-L, embeddings,
clustering and I/O helpers. Knows nothing of the methods built on it."""
