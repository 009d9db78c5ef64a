"""LaTeX normalization through KaTeX's parser, style sampling, and the batched Chromium renderer."""
