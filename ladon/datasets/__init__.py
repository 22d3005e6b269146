"""Data sets: the procedural ``ladon-shapes`` generator and loaders for ImageFolder, COCO and VOC layouts."""
