"""Your own images: a folder of image files as the data of either paper's protocol.

The layout is anomalib's ``Folder`` datamodule's (:mod:`.dirs`; the names are options):

* ``FOLDER/normal/`` (``normal_dir``): the normal images, directly in it (one normal class) or in
  ``normal/<class>/`` subfolders (paper B's normal classes, two or more);
* ``FOLDER/abnormal/`` (``abnormal_dir``; ``anomalous/``, the older name, is read where only it is
  there): the abnormal images, if any; paper A trains on a share of them, paper B tests on them;
* ``normal_test_dir``: normal images to test on; ``mask_dir``: pixel masks, accepted and not read
  (the CapsNet scores whole images).

Paper A, protocol *imbalanced*: images in ``normal/`` plus ``abnormal/``. Paper B, protocol
*novelty*: ``normal/<class>/`` subfolders, or a normal-only folder (one normal class; without
abnormal images the test set is normal and there is no AUROC, only scores); ``protocol="novelty"``
on ``normal/`` plus ``abnormal/`` trains on the normal images alone, as anomalib does.

The test set: ``FOLDER/test/normal/`` and ``FOLDER/test/abnormal/`` (or ``anomalous/``) where
present, else ``normal_test_dir``, else a share of each training folder drawn with a fixed seed;
:class:`FolderData` says which images train and which test (``parts``, ``split_record``). Files
are read with Pillow (PNG, JPEG, BMP, TIFF; any size and mode), converted to ``channels`` and
resized to ``image_size``, into float32 in [0, 1]. A file that cannot be read stops loading with
one line naming it (or, when asked, is skipped); every file not read is listed in
``FolderData.skipped``, never dropped silently.

:mod:`.images` reads image files, :mod:`.dirs` names a folder's subfolders and finds its protocol,
:mod:`.layout` reads it into a :class:`FolderData`, :mod:`.export` writes a study cell's images as
such a folder.
"""
from capslib.data.folder.images import (FolderError, HIGH_DEPTH, IMAGE_SUFFIXES, MIN_ANOMALOUS,
    MIN_IMAGE_SIZE, MIN_NORMAL, MODES, NATURAL, PROTOCOLS, Preprocessing, SPLIT_SEED, Skipped, TEST_FRACTION,
    list_images, read_image, read_images)
from capslib.data.folder.dirs import ABNORMAL_NAMES, FolderDirs, Layout, resolve_layout
from capslib.data.folder.layout import FolderData, Part, load_folder
from capslib.data.folder.export import save_image, write_example_folder

__all__ = [
    'FolderError', 'HIGH_DEPTH', 'IMAGE_SUFFIXES', 'MIN_ANOMALOUS', 'MIN_IMAGE_SIZE', 'MIN_NORMAL',
    'MODES', 'NATURAL', 'PROTOCOLS', 'Preprocessing', 'SPLIT_SEED', 'Skipped', 'TEST_FRACTION',
    'list_images', 'read_image', 'read_images', 'ABNORMAL_NAMES', 'FolderDirs', 'Layout', 'resolve_layout',
    'FolderData', 'Part', 'load_folder', 'save_image', 'write_example_folder',
]
