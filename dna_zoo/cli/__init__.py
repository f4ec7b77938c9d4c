"""The `dna` command line."""
