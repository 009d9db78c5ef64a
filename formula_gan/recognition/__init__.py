"""Reading handwritten formulas: pictures and InkML files in, LaTeX out (``formula-gan recognize``)."""

from formula_gan.recognition.recognizer import Reading, Recognizer, default_recognizer, export_recognizer

__all__ = ["Reading", "Recognizer", "default_recognizer", "export_recognizer"]
