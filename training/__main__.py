"""``python -m training``: the training command line (:mod:`training.cli`)."""

from training.cli import main

main()
