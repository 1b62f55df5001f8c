"""HyperOFA's hypernetwork: word sets -> OFA coordinates (model, data, training tasks)."""
