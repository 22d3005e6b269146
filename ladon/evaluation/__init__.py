"""Evaluation metrics: top-k accuracy, COCO box AP, segmentation mIoU, rate statistics, input-compression codecs."""
