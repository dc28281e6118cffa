"""Synthetic datasets in the real layouts, for the tests and the demo models.

Each generator writes files exactly where and how the real dataset has them, so
the real readers are exercised; the pictures make the task visible:

    dogs.py         Stanford Dogs: a dog figure whose coat colour and pattern is its breed
    motifs.py       HARRISON and movie posters: one visible motif per label
    food.py         Open Images crops: round stacked hamburgers, triangular sandwiches
    drawn_faces.py  IMDB-WIKI and UTKFace: drawn faces whose tilt, gender and age are visible
    radiographs.py  dental radiographs with annotated lesions, as VoTT / LabelMe / COCO exports
"""
