"""The evaluation API: validates input, asks the model service for the segment, applies the
business policy, records every decision and serves the web form."""
