"""bert-distill: distil a BERT teacher into small, fast students, one versioned artifact per step."""
