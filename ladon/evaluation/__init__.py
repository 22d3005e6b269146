"""Evaluation: task metrics, rate statistics and input-compression codecs (:mod:`.metrics`), and the rate-accuracy
evaluation ``ladon eval CONFIG.yaml`` (:mod:`.evaluate`)."""
