"""vbnf engine: the neural field, its training, its renderers and its file format. Never imports viewer/."""
