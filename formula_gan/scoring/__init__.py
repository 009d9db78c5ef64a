"""Scoring generators: the generator scorecard (content kept, realism) and the paper's Table 1 protocol.

Dependencies run one way: scoring uses evaluation (inference and metrics), reports
(tables, JSON) and training; none of those import scoring.
"""
