"""dna_zoo.export."""
