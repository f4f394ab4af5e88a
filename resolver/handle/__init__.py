"""The Handle native protocol: pure codec, request service, UDP/TCP servers, client."""
