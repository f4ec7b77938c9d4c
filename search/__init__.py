"""dna_zoo.search."""
