"""InsTag: open-set intention tagging, normalization, metrics, Cf-D sampling, tagger evaluation."""
