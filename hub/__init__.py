"""dna_zoo.hub."""
