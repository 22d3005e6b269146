"""Data sets: the procedural ``ladon-shapes`` generator (:mod:`.synth`), and loaders for ImageFolder, COCO and VOC
layouts with the data set specs that training and evaluation configs share (:mod:`.loaders`)."""
