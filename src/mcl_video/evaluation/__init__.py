"""mcl_video.evaluation: linear probes (SVM / FC on pooled features), fine-tuning and retrieval on frozen or
fine-tuned backbones.

load_encoder -> EvalClipDataset -> extract_features -> linear_probe_svm / linear_probe_fc /
knn_accuracy / retrieval_recall;   extract_stacked + probe_table for several encoders at once;
finetune for the whole network. (The demo application built on these lives in ``mcl_video.demo``.)
"""

from mcl_video.evaluation.datasets import EvalClipDataset, clip_indices, collate_videos
from mcl_video.evaluation.encoder import EncoderLoadError, load_encoder
from mcl_video.evaluation.features import (
    StackedEncoders,
    extract_features,
    extract_stacked,
    load_features,
    save_features,
    shard_indices,
)
from mcl_video.evaluation.finetune import FinetuneConfig, VideoClassifier, finetune, predict_videos
from mcl_video.evaluation.probes import (
    classification_metrics,
    leave_one_out_svm,
    linear_probe_fc,
    linear_probe_svm,
)
from mcl_video.evaluation.protocols import (
    PROTOCOLS,
    binomial_se,
    chance_levels,
    format_table,
    probe_table,
    run_protocols,
)
from mcl_video.evaluation.retrieval import (
    cosine_similarity,
    knn_accuracy,
    leave_one_out_knn,
    retrieval_recall,
)
from mcl_video.figures import plot_confusion  # the confusion-matrix PNG, public here too

__all__ = [
    "PROTOCOLS",
    "format_table",
    "run_protocols",
    "EncoderLoadError",
    "StackedEncoders",
    "EvalClipDataset",
    "FinetuneConfig",
    "VideoClassifier",
    "classification_metrics",
    "clip_indices",
    "collate_videos",
    "cosine_similarity",
    "binomial_se",
    "chance_levels",
    "extract_features",
    "extract_stacked",
    "probe_table",
    "finetune",
    "knn_accuracy",
    "leave_one_out_knn",
    "leave_one_out_svm",
    "linear_probe_fc",
    "linear_probe_svm",
    "load_encoder",
    "load_features",
    "plot_confusion",
    "predict_videos",
    "retrieval_recall",
    "save_features",
    "shard_indices",
]
