"""python -m training.open_images: see the package docstring and --help."""

from training.open_images.cli import main

main()
