"""Portfolio runs requested through the API: their table, the queue to the worker, the routes."""
