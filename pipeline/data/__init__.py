"""Task data: raw readers, row policies, the prepare step, word tokens and model batches."""
