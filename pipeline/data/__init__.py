"""Task data: raw readers, row policies, the prepare step and model batches."""
