"""The recognizer's home: its run config (``config``), its files (``files``: loading, export),
and reading pictures and InkML files (``recognizer``, ``preprocess``; ``formula-gan recognize``)."""

from formula_gan.recognition.files import LoadedRecognizer, export_recognizer, load_recognizer
from formula_gan.recognition.recognizer import Reading, Recognizer, default_recognizer

__all__ = ["LoadedRecognizer", "Reading", "Recognizer", "default_recognizer", "export_recognizer", "load_recognizer"]
