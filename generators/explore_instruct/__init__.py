"""EXPLORE-INSTRUCT (Wan et al., EMNLP 2023): the domain tree, its growth, pruning and sampling."""
