"""Supernet side of DNA: teacher, block supernet, block-wise KD training, rating, data, SPOS baseline."""
