"""DYNOSAUR (Yin et al., EMNLP 2023): tasks from dataset metadata, instances from rows, replay."""
