"""`python -m training.caries_masks`, the documented command, is training.masks_from_annotations."""

import sys

from training.masks_from_annotations import main

if __name__ == "__main__":
    main(sys.argv[1:])
