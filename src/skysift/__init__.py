"""skysift: sift imaging surveys for strong lenses and galaxy mergers with CNNs."""

__version__ = "0.1.0"
