"""Keep this repository's Space configuration (README.md's front matter) in step with models/hub.json.

    python space.py [--hub-config models/hub.json] [--readme README.md]

A Hugging Face Space runs `python app.py` from a clone of this repository. Its README's front
matter is its configuration; this writes into it:
- `models`: the pinned model repos, so the Space page links them;
- `preload_from_hub`: each pinned public repo's files at its pinned commit ("repo file,file
  commit"; the training logs left out), which the Hub downloads into the Space's cache when it
  builds it, so the app starts without downloading and the first visitor does not wait. A
  private repo cannot be preloaded (the build has no token): the app downloads it when it
  starts, with the Space's HF_TOKEN secret;
- `sdk_version` (the Gradio installed here, the one the tests ran with) and `python_version`.
Everything else in the README stays as it is. Run it after pinning a model, then push.
"""

from __future__ import annotations

import argparse
import platform
from importlib import metadata
from pathlib import Path

from core import source

ROOT = Path(__file__).resolve().parent


def space_config(pins: dict) -> dict:
    """The front matter keys this command owns, for the pinned repos (listed at their commits)."""
    from huggingface_hub import HfApi

    api = HfApi()
    preload = []
    for pin in pins.values():
        if not source.COMMIT.fullmatch(pin.revision):
            raise SystemExit(f"{pin.repo_id} is not pinned to a commit in models/hub.json: pin the commit first")
        if api.model_info(pin.repo_id, revision=pin.revision).private:
            print(f"{pin.repo_id} is private: not preloaded (the Space's build has no token); the app downloads "
                  f"it when it starts, with the Space's HF_TOKEN secret")
            continue
        files = sorted(api.list_repo_files(pin.repo_id, revision=pin.revision))
        preload.append(f"{pin.repo_id} {','.join(f for f in files if source.served(f))} {pin.revision}")
    return {"models": sorted({pin.repo_id for pin in pins.values()}), "preload_from_hub": preload or None,
            "sdk_version": metadata.version("gradio"), "python_version": ".".join(platform.python_version_tuple()[:2])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub-config", help="the pins (default: models/hub.json, or $HUB_CONFIG)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(args.readme)
    for key, value in space_config(source.read_hub_config(args.hub_config)).items():
        setattr(card.data, key, value)
    card.save(args.readme)
    print(f"{args.readme}: models {card.data.models or 'none'}, Gradio {card.data.sdk_version}, "
          f"Python {card.data.python_version}")


if __name__ == "__main__":
    main()
