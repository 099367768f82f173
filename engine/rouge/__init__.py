"""ROUGE-L near-duplicate filtering, exact to rouge_score and fast: tokenizers, LCS kernels, the
inverted index, the probe and the filter."""
