"""Exact DBSCAN on cosine distance (sklearn's decisions bit for bit), its neighbour graph and InsTag's
semantic aggregation."""
