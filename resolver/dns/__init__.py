"""DNS front end: an authoritative zone that names identifiers and OIDs."""
