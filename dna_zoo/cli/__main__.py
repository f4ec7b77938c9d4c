"""``python -m dna_zoo.cli``: the `dna` command, for launchers such as ``torchrun -m``."""

from dna_zoo.cli.main import main

main()
