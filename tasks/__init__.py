"""The task registry: one module per tab, in the order the tabs appear.

A task module provides NAME, TITLE, API_NAME, DESCRIPTION, TRAIN_COMMAND,
a plain `predict(bundle, image)` and `tab(bundle, ui)` declaring its components.
"""

from tasks import dog_breed, hashtags, movie_genres, sandwich

TASKS = [
    dog_breed,
    hashtags,
    movie_genres,
    sandwich,
]
