"""The model service's client: coalesced calls, retries within a budget, the breaker, and its HTTP/1.1 transport."""
