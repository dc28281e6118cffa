"""The task registry: one module per tab, in the order the tabs appear.

A task module provides NAME, TITLE, API_NAME, DESCRIPTION, TRAIN_COMMAND, METADATA
(the schema of what its tab reads in task.json, core/schema.py), a plain `predict(bundle, image)` and
`tab(bundle, ui, flagging)` declaring its components (flagging: where its flags go, None when off).
"""

from tasks import age_gender, caries, dog_breed, hashtags, movie_genres, sandwich

TASKS = [
    dog_breed,
    hashtags,
    movie_genres,
    age_gender,
    caries,
    sandwich,
]
