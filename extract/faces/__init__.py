"""The performers' faces: MTCNN detection, FER2013 expression nets, and a clip's face track as a feature set."""
