"""Statements of a decision (`Comunicado da decisão`): what a customer who was denied or sent to review
is given (the decision, its principal reasons, the data used and its source, how to ask for a review
and by when), as JSON for the page and as a PDF; every issue is an audit event."""
