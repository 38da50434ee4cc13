"""Your own images: a folder of image files as the data of either paper's protocol.

The layout is anomalib's folder convention; what it holds chooses the way in:

* paper A, protocol *imbalanced*: ``FOLDER/normal/`` (the normal class) and ``FOLDER/anomalous/``
  (a few anomalies), both used in training as paper A does;
* paper B, protocol *novelty*: ``FOLDER/normal/<class>/`` subfolders, two classes or more; an
  optional ``FOLDER/anomalous/`` holds test anomalies only (paper B trains on normal images).

Either may have ``FOLDER/test/normal/`` and ``FOLDER/test/anomalous/``; without them the test set
is drawn from the folders above with a fixed seed. Files are read with Pillow (PNG, JPEG, BMP,
TIFF; any size and mode), converted to ``channels`` and resized to ``image_size``, into float32
in [0, 1]. A file that cannot be read stops loading with one line naming it (or, when asked,
is skipped); every file not read is listed in ``FolderData.skipped``, never dropped silently.

:mod:`.images` reads image files, :mod:`.layout` reads a folder's layout into a
:class:`FolderData`, :mod:`.export` writes a study cell's images as such a folder.
"""
from capslib.data.folder.images import (FolderError, HIGH_DEPTH, IMAGE_SUFFIXES, MIN_ANOMALOUS,
    MIN_IMAGE_SIZE, MIN_NORMAL, MODES, NATURAL, PROTOCOLS, Preprocessing, SPLIT_SEED, Skipped, TEST_FRACTION,
    list_images, read_image, read_images)
from capslib.data.folder.layout import FolderData, ONE_CLASS, detect_layout, load_folder
from capslib.data.folder.export import save_image, write_example_folder

__all__ = [
    'FolderError', 'HIGH_DEPTH', 'IMAGE_SUFFIXES', 'MIN_ANOMALOUS', 'MIN_IMAGE_SIZE', 'MIN_NORMAL',
    'MODES', 'NATURAL', 'PROTOCOLS', 'Preprocessing', 'SPLIT_SEED', 'Skipped', 'TEST_FRACTION',
    'list_images', 'read_image', 'read_images', 'FolderData', 'ONE_CLASS', 'detect_layout',
    'load_folder', 'save_image', 'write_example_folder',
]
