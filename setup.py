"""Package discovery for the one ``dna_zoo`` namespace.

``search/``, ``export/`` and ``hub/`` live at the top of the checkout but install as
``dna_zoo.search``, ``dna_zoo.export`` and ``dna_zoo.hub``. Every package under those roots is
found by ``find_packages``, so a new sub-package cannot be left out of the wheel by a
hand-written list (tests/test_packaging.py builds the wheel and imports every module from it).
"""

from setuptools import find_packages, setup

ROOTS = {"dna_zoo": "dna_zoo", "dna_zoo.search": "search", "dna_zoo.export": "export", "dna_zoo.hub": "hub"}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
