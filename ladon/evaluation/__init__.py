"""Evaluation: the rate-accuracy evaluation ``ladon eval CONFIG.yaml`` (:mod:`.evaluate`, the loop and command line)
with its config (:mod:`.config`), the methods it compares (:mod:`.predictors`, incl. the public
:class:`~.predictors.TeacherPredictor`), per-task scoring (:mod:`.scoring`) and outputs (:mod:`.report`); task
metrics, rate statistics and input-compression codecs (:mod:`.metrics`)."""
