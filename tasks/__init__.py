"""The task registry: one module per tab, in the order the tabs appear.

The shared code (app.py, predict.py, training/demo.py) asks a task module for all it needs and names
no task. A task module provides:

- NAME, TITLE, API_NAME, DESCRIPTION, TRAIN_COMMAND: what it is called, and the command that trains it;
- METADATA: the schema of what its tab reads in task.json (core/schema.py); `headline(metadata)`, the
  held-out figures shown under the model (core/scores.py);
- `predict(bundle, image, ...)`, a plain function, and `tab(bundle, ui, flagging)`, which declares
  its components (flagging: where its flags go, None when off);
- KIND ("classifier", "segmentation" or "faces": predict.py's reader of its outputs), CSV_EXTRAS (the
  columns a classifier's `from_scores` gives beside the scores), PREDICT_OPTIONS (which of
  predict.py's --threshold and --tilt-by apply);
- DEMO_RECIPE (the module whose `build_demo(out, workdir)` makes the tab's model when it has none:
  pretrained weights or a synthetic demo) and DEMO_SECONDS (about how long that takes).

A seventh task is a module providing these, added to TASKS below, or, without editing this file,
named in $APP_EXTRA_TASKS (importable module names, comma-separated: they come after the six).
"""

import importlib
import os

from tasks import age_gender, caries, dog_breed, hashtags, movie_genres, sandwich

TASKS = [
    dog_breed,
    hashtags,
    movie_genres,
    age_gender,
    caries,
    sandwich,
    *(importlib.import_module(name.strip()) for name in os.environ.get("APP_EXTRA_TASKS", "").split(",")
      if name.strip()),
]
