"""The paper's metrics (:mod:`drcnet.metrics.classification`) and the catalogue's
(:mod:`drcnet.metrics.catalogue`), re-exported here.
"""

from drcnet.metrics.catalogue import (
    MAD_TO_SIGMA,
    OTHER_FAMILIES,
    calibration_metrics,
    catalogue_metrics,
    ood_metrics,
    other_family,
    param_errors,
    rejection_metrics,
    subclass_accuracy,
)
from drcnet.metrics.classification import (
    BOOT_CHUNK,
    MIN_SOURCES,
    accuracy_interval,
    classification_metrics,
    clustered_accuracy_interval,
    evaluate_predictions,
    group_metrics,
    source_clustered_accuracy,
)

__all__ = [
    "BOOT_CHUNK",
    "MAD_TO_SIGMA",
    "MIN_SOURCES",
    "OTHER_FAMILIES",
    "accuracy_interval",
    "calibration_metrics",
    "catalogue_metrics",
    "classification_metrics",
    "clustered_accuracy_interval",
    "evaluate_predictions",
    "group_metrics",
    "ood_metrics",
    "other_family",
    "param_errors",
    "rejection_metrics",
    "source_clustered_accuracy",
    "subclass_accuracy",
]
