"""Models: the teacher (any BERT-like HF model) and the students."""
