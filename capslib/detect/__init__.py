"""A capsule anomaly detector on your own images: fit it (either paper's protocol) on arrays or on
a folder, save and load it (safetensors + model.json), score new images, and write an example
folder from the study's data. Scores: higher = more anomalous.

:mod:`.estimator` the scikit-learn / PyOD estimator on arrays, :mod:`.training` training it,
:mod:`.detector` the trained model and its files, :mod:`.fit` fitting it on a folder,
:mod:`.files` the images to score and the CSV of scores, :mod:`.example` the example folder.
"""
from capslib.detect.detector import (ARRAYS, DECISION, Detector, FORMAT, FORMAT_VERSION, META, ModelFileError,
    READS, SCORE_ORDER, VARIANT, WEIGHTS)
from capslib.detect.training import FitSettings, FolderCell, detector_cell, progress_bar, train_detector
from capslib.detect.estimator import ArrayError, CapsNetDetector, SCORES, as_images, as_labels
from capslib.detect.fit import fit, fit_or_load, fit_request
from capslib.detect.files import collect_images, write_csv
from capslib.detect.example import EXAMPLE, example

__all__ = [
    'ARRAYS', 'DECISION', 'Detector', 'FORMAT', 'FORMAT_VERSION', 'META', 'ModelFileError', 'READS',
    'SCORE_ORDER', 'VARIANT', 'WEIGHTS', 'FitSettings', 'FolderCell', 'detector_cell', 'progress_bar',
    'train_detector', 'ArrayError', 'CapsNetDetector', 'SCORES', 'as_images', 'as_labels', 'fit',
    'fit_or_load', 'fit_request', 'collect_images', 'write_csv', 'EXAMPLE', 'example',
]
