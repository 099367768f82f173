"""SELF-INSTRUCT (Wang et al., ACL 2023): seed tasks, bootstrap, classification, instances, filters."""
