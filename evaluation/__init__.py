"""Evaluation: protocols (metric-vs-human alignment, verification, retrieval, triplets) and figures."""
