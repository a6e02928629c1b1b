"""Per-object quality flags of a stamp (uint8 bits, docs/formats.md), shared by every step
that reports them (cutouts set them; gather counts them; the review gallery names them)."""

#: Per-object flag bits (uint8), docs/formats.md.
EDGE = 1     # the stamp extends past the tile edge (those pixels are NaN)
MASKED = 2   # the survey mask rejects pixels of the stamp inside the tile
NAN = 4      # the tile holds NaN (or infinite) pixels inside the stamp
CENTRE = 8   # the object's own pixel is invalid in some band
EMPTY = 16   # some band of the stamp has no valid pixel at all
FLAG_BITS = {"EDGE": EDGE, "MASKED": MASKED, "NAN": NAN, "CENTRE": CENTRE, "EMPTY": EMPTY}
