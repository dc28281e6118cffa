"""Where an image is downloaded from: the CVDF's mirror (--source mirror, --mirror-url) for the
subsets it serves, else the photo's OriginalURL on Flickr."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

# The Common Visual Data Foundation's mirror of the images with boxes, addressed as the official
# downloader (openimages/dataset, downloader.py) does: bucket open-images-dataset, key
# {subset}/{ImageID}.jpg, for these subsets.
MIRROR_URL = "https://open-images-dataset.s3.amazonaws.com"
MIRROR_SUBSETS = frozenset({"train", "validation", "test", "challenge2018"})
# Only these are ever fetched: a file:// OriginalURL would read a local file into the dataset.
SCHEMES = ("http", "https")
NOT_HTTP = "URL not http(s)"


def scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


@dataclass(frozen=True)
class ImageOrigin:
    """--source and --mirror-url: where each image is fetched from."""
    prefer: str  # "mirror" or "flickr"
    mirror_url: str

    def locate(self, image: str, subset: str, original_url: str, original_md5: str) -> dict:
        """The URL to fetch, the MD5 to check ("" for none) and which source that is. The mirror's
        files are rescaled (at most 1024 px on the longest side, aspect ratio kept, says the CVDF):
        not the bytes OriginalMD5 describes, so the MD5 is checked on Flickr's originals only.
        Boxes are relative to the image's sides, so they crop the rescaled files alike."""
        if self.prefer == "mirror" and subset in MIRROR_SUBSETS:
            return {"url": f"{self.mirror_url.rstrip('/')}/{subset}/{image}.jpg", "md5": "", "source": "mirror"}
        return {"url": original_url, "md5": original_md5, "source": "flickr"}
