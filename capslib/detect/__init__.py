"""A capsule anomaly detector on a folder of your own images: fit it (either paper's protocol),
save and load it (safetensors + model.json), score new images, and write an example folder
from the study's data. Scores: higher = more anomalous.

:mod:`.detector` the trained model and its files, :mod:`.fit` training it on a folder,
:mod:`.files` the images to score and the CSV of scores, :mod:`.example` the example folder.
"""
from capslib.detect.detector import (DECISION, Detector, FORMAT, FORMAT_VERSION, META, ModelFileError,
    SCORE_ORDER, VARIANT, WEIGHTS)
from capslib.detect.fit import (FitSettings, FolderCell, fit, fit_or_load, fit_request, folder_cell,
    progress_bar, study_data)
from capslib.detect.files import collect_images, write_csv
from capslib.detect.example import EXAMPLE, example

__all__ = [
    'DECISION', 'Detector', 'FORMAT', 'FORMAT_VERSION', 'META', 'ModelFileError', 'SCORE_ORDER',
    'VARIANT', 'WEIGHTS', 'FitSettings', 'FolderCell', 'fit', 'fit_or_load', 'fit_request',
    'folder_cell', 'progress_bar', 'study_data', 'collect_images', 'write_csv', 'EXAMPLE', 'example',
]
